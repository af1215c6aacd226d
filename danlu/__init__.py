"""danlu (丹炉): from raw data to a checked, trained, evaluated and reported model."""

__version__ = "0.1.0"
