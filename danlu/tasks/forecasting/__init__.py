"""Time-series forecasting: the next steps of one or more series, from a window of their past."""
