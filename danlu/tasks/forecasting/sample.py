"""A few hundred hours of two daily-seasonal series with a trend and a past covariate.

No future covariate: the contract test forecasts from a history of rows alone."""

import numpy as np
import pandas as pd

from danlu.tasks.base import Sample

MIN_ROWS = 240  # ten days: windows of a day's context in the first 48 rows, and plenty left to test

RECIPE = {"forecast": {"time": "date", "targets": ["load", "temperature"],
                       "covariates": {"past": ["wind"]},
                       "context": 24, "horizon": 8, "split": {"train": 0.6, "validation": 0.2, "test": 0.2},
                       "plots": 2},
          "model": {"arch": "dlinear"},
          "train": {"epochs": 30, "batch_size": 8, "optimizer": "adam", "lr": 0.01, "progress": False,
                    "precision": "fp32"}}


def sample(rows: int = 60, seed: int = 0) -> Sample:
    """At least MIN_ROWS rows (a series needs whole seasons), more when asked for."""
    rows = max(rows, MIN_ROWS)
    rng = np.random.default_rng(seed)
    hours = np.arange(rows)
    day = np.sin(2 * np.pi * hours / 24)
    frame = pd.DataFrame({
        "date": pd.date_range("2024-01-01", periods=rows, freq="h").astype(str),
        "load": 50 + 10 * day + 0.02 * hours + rng.normal(0, 0.5, rows),
        "temperature": 15 + 4 * np.roll(day, 3) + rng.normal(0, 0.3, rows),
        "wind": rng.normal(5, 1, rows),
    })
    return Sample(frame, RECIPE)
