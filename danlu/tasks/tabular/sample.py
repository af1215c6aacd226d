"""A small table: two numeric features, one categorical, a label that depends on all three."""

import numpy as np
import pandas as pd

from danlu.tasks.base import Sample

RECIPE = {"model": {"hidden": [8]},
          "train": {"epochs": 10, "batch_size": 8, "optimizer": "adam", "lr": 0.02, "progress": False}}


def _table(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.normal(40, 10, rows).round(1), "income in k€": rng.normal(50, 15, rows).round(1),
                          "job": rng.choice(["A171", "A172", "A173"], rows)})
    frame.loc[::7, "age"] = np.nan  # a gap the preprocessing fills
    return frame


def classification(rows: int = 60, seed: int = 0) -> Sample:
    frame = _table(rows, seed)
    score = frame["income in k€"].fillna(50) / 15 + (frame["job"] == "A173") * 1.5
    frame["label"] = np.where(score > score.median(), "good", "bad")
    return Sample(frame, RECIPE, ["age", "income in k€", "job"], ["job"])


def regression(rows: int = 60, seed: int = 0) -> Sample:
    frame = _table(rows, seed)
    frame["label"] = frame["income in k€"] * 2 + (frame["job"] == "A173") * 10
    return Sample(frame, RECIPE, ["age", "income in k€", "job"], ["job"])
