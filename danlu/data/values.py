"""What a cell of a label or feature column holds: a number, a gap written out as text, or neither.

A csv has no types. One stray `?` or `abc` must not turn a column of numbers into text (and so
into a block of one-hot categories downstream), and `NaN`, `null` or `N/A` written out are gaps,
never a class or a category. The readers use these to type columns; the quality gate to count
what is left over, with its rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# How pandas, spreadsheets and R write "no value", compared stripped and lower-cased; the same
# spellings the tabular preprocessing fills as gaps.
MISSING_TEXT = frozenset({"", "nan", "none", "null", "n/a", "na"})
# Every number reaches a model as float32: beyond this it is an infinity there.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Cells that hold structure (JSON arrays and objects) rather than one value.
CONTAINERS = (list, tuple, dict, set, np.ndarray)


def is_gap_text(value) -> bool:
    return isinstance(value, str) and value.strip().lower() in MISSING_TEXT


def spelled_missing(values: pd.Series) -> np.ndarray:
    """True where a cell is text that means no value."""
    if values.dtype != object and not isinstance(values.dtype, pd.StringDtype):
        return np.zeros(len(values), dtype=bool)
    return np.fromiter((is_gap_text(v) for v in values), dtype=bool, count=len(values))


def to_number(value) -> float | None:
    """The cell as a float (NaN for a gap), or None when something is there that is not a number."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in MISSING_TEXT:
            return math.nan
        try:
            number = float(text)
        except ValueError:
            return None
        # "-nan" is no gap spelling the gate counts as missing, and no number either
        return None if math.isnan(number) else number
    if value is None or value is pd.NA:
        return math.nan
    if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
        try:
            return float(value)
        except OverflowError:  # a Python integer past float64
            return math.inf
    return None


def as_numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(the column as float64, NaN for gaps and bad cells; True where a cell is there but is no usable
    number: text that does not read as one, an infinity, a value beyond float32 such as 1e300)."""
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.zeros(len(values), dtype=bool)
    else:
        parsed = [to_number(v) for v in values]
        bad = np.fromiter((p is None for p in parsed), dtype=bool, count=len(parsed))
        numbers = np.fromiter((math.nan if p is None else p for p in parsed), dtype=np.float64, count=len(parsed))
    with np.errstate(invalid="ignore"):
        bad |= ~np.isnan(numbers) & ~(np.abs(numbers) <= FLOAT32_MAX)
    return np.where(bad, np.nan, numbers), bad


def mostly_numbers(values: pd.Series) -> bool:
    """Whether a column that did not read as numbers is numbers with some stray cells: at least half
    of the values that are there (gaps aside) read as numbers."""
    parsed = [to_number(v) for v in values.dropna()]
    present = [p for p in parsed if p is None or not math.isnan(p)]
    numbers = sum(p is not None for p in present)
    return numbers > 0 and 2 * numbers >= len(present)


def short_repr(value, width: int = 40) -> str:
    """A cell as a message shows it: a 5,000-digit number is not read in full."""
    try:
        text = repr(value) if isinstance(value, str) else str(value)
    except ValueError:  # an integer past Python's 4,300-digit limit for printing
        return f"a {type(value).__name__} too long to show"
    return text if len(text) <= width else text[:width - 1] + "…"
