"""The two columns every frame carries, so any later message can point at the source line."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd


def finish(frame: pd.DataFrame, rows: Iterable[int], source: str | Path) -> pd.DataFrame:
    """Add `_row` (1-based line number, or index + 1 where there are no lines) and `_source`."""
    frame = frame.copy()
    frame["_row"] = np.asarray(list(rows), dtype=np.int64)
    frame["_source"] = str(source)
    return frame
