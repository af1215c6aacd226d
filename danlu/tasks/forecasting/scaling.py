"""Per-series scaling, fitted on the training rows only and saved beside the model as JSON (never a pickle).

Every column the model reads is scaled by its training mean and standard deviation (the ETT papers'
convention, under which `mse` and `mae` are reported); MASE's denominator, the in-sample seasonal-naive
MAE of each training series, is kept here too, so a loaded run measures MASE without its training data.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from danlu.errors import DataError
from danlu.tasks.forecasting.series import POSITION, Layout


@dataclass
class Scaling:
    columns: list[str]
    mean: list[float]
    std: list[float]
    mase_scale: list[float | None]  # per target, in its own units; None where the series never changes
    season: int

    @classmethod
    def fit(cls, series: pd.DataFrame, layout: Layout) -> Scaling:
        x = series[layout.columns].to_numpy(dtype=np.float64)
        mean, std = x.mean(axis=0), x.std(axis=0)
        std = np.where(std > 0, std, 1.0)  # a constant series (the gate says so) is moved, not stretched
        pos = series[POSITION].to_numpy() if POSITION in series.columns else np.arange(len(series))
        scales = [seasonal_mae(series[t].to_numpy(dtype=np.float64), pos, layout.season) for t in layout.targets]
        return cls(list(layout.columns), mean.tolist(), std.tolist(), scales, layout.season)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        x = frame[self.columns].to_numpy(dtype=np.float64)
        return ((x - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def transform_columns(self, values: np.ndarray, columns: list[str]) -> np.ndarray:
        at = [self.columns.index(c) for c in columns]
        return ((values - np.asarray(self.mean)[at]) / np.asarray(self.std)[at]).astype(np.float32)

    def targets_back(self, values: np.ndarray) -> np.ndarray:
        """Scaled target values (..., targets) in their own units again."""
        t = values.shape[-1]
        return values.astype(np.float64) * np.asarray(self.std[:t]) + np.asarray(self.mean[:t])

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Scaling:
        try:
            return cls(columns=list(data["columns"]), mean=[float(v) for v in data["mean"]],
                       std=[float(v) for v in data["std"]],
                       mase_scale=[None if v is None else float(v) for v in data["mase_scale"]],
                       season=int(data["season"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"the saved scaling is incomplete or malformed ({exc})") from None


def seasonal_mae(values: np.ndarray, pos: np.ndarray, season: int) -> float | None:
    """Mean |y_t - y_(t - season)| over the training steps that have both (one step when the series is
    shorter than a season and a step); None when it is zero (a constant series has no MASE)."""
    if len(pos) and pos[-1] + 1 <= season:
        season = 1
    grid = np.full(int(pos[-1]) + 1 if len(pos) else 0, np.nan)
    grid[pos] = values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no pair a season apart: an empty mean, NaN
        found = np.nanmean(np.abs(grid[season:] - grid[:-season])) if len(grid) > season else np.nan
    return float(found) if np.isfinite(found) and found > 0 else None
