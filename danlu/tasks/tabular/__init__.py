"""Tabular classification and regression: a row of features -> a class or a number."""
