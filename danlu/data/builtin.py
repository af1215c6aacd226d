"""`builtin:NAME`: the small datasets bundled with scikit-learn (no download needed)."""

from __future__ import annotations

import difflib

import pandas as pd

from danlu.data.rows import finish
from danlu.errors import DataError

NAMES = ("digits", "breast_cancer", "wine", "iris")


def read_builtin(name: str) -> pd.DataFrame:
    from sklearn import datasets as sk

    if name not in NAMES:
        close = difflib.get_close_matches(name, NAMES, n=1)
        raise DataError(f"unknown builtin dataset '{name}'; available: {', '.join(NAMES)}"
                        + (f"; did you mean '{close[0]}'?" if close else ""))
    bunch = getattr(sk, f"load_{name}")()
    if name == "digits":
        # sklearn names them pixel_0_0..pixel_7_7; a flat index is what people write in recipes.
        columns = [f"pixel_{i}" for i in range(bunch.data.shape[1])]
        labels = pd.Series(bunch.target, dtype="int64")
    else:
        columns = list(bunch.feature_names)
        # Class names, not codes: reports then say "malignant", not "0".
        labels = pd.Series(bunch.target_names[bunch.target]).astype("str")
    frame = pd.DataFrame(bunch.data, columns=columns)
    frame["label"] = labels
    return finish(frame, range(1, len(frame) + 1), f"builtin:{name}")
