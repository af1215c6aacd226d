"""`hub:NAME`: a Hugging Face dataset through `datasets.load_dataset`, one frame per split."""

from __future__ import annotations

import difflib

import pandas as pd

from danlu.data.rows import finish
from danlu.errors import DataError

# What hub datasets call their splits -> danlu's names. Others (e.g. "unsupervised") are left out.
HUB_SPLITS = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
              "dev": "validation", "test": "test"}


def read_hub(name: str, extras: dict | None = None) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """A DatasetDict becomes {split: frame}; a single Dataset (extras `split: train`) one frame."""
    import datasets

    kwargs = dict(extras or {})
    chosen: dict = kwargs.pop("splits", None) or {}  # danlu split -> hub split, e.g. {validation: dev}
    try:
        loaded = datasets.load_dataset(name, **kwargs)
    except Exception as exc:  # network, auth, missing config: all user-fixable, none a danlu bug
        raise DataError(f"hub:{name}: could not load with datasets.load_dataset"
                        f"({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}): {exc}") from None
    if not hasattr(loaded, "keys"):
        return _to_frame(loaded, f"hub:{name}")
    available = list(loaded.keys())
    mapping = {ours: theirs for theirs in available if (ours := HUB_SPLITS.get(theirs.lower()))}
    for ours, theirs in chosen.items():
        if theirs not in available:
            close = difflib.get_close_matches(str(theirs), available, n=1)
            raise DataError(f"hub:{name}: no split '{theirs}' (hub.splits.{ours}); splits are: "
                            f"{', '.join(available)}" + (f"; did you mean '{close[0]}'?" if close else ""))
        mapping[ours] = theirs
    if not mapping:
        raise DataError(f"hub:{name}: none of its splits ({', '.join(available)}) is train/validation/test; "
                        "map them with data.hub.splits, e.g. {train: " + available[0] + "}")
    return {ours: _to_frame(loaded[theirs], f"hub:{name}[{theirs}]") for ours, theirs in mapping.items()}


def _to_frame(dataset, source: str) -> pd.DataFrame:
    frame = dataset.to_pandas()
    if frame.empty:
        raise DataError(f"{source} is empty")
    return finish(frame.reset_index(drop=True), range(1, len(frame) + 1), source)
