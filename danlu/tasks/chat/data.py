"""The chat data stage: conversations read with danlu.data's readers, split, and through the quality gate.

A conversation is one record (a row of a jsonl/csv/parquet file, an item of a JSON array), so it is
read here rather than by the generic stage, which takes a list in a cell for a mistake. Each split's
frame holds `messages` (the turns) and `text` (the turns' text): the generic gate checks `text`
(empty, duplicated, in train and held out alike) and reports its lengths; pretraining reads it too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from danlu.data import QualityReport, Splits, check_quality
from danlu.data.sources import read_source
from danlu.data.splits import carve_pool, take_rows
from danlu.errors import DataError
from danlu.tasks.chat.conversations import conversations_of

SPLITS = ("train", "validation", "test")


def load(recipe) -> tuple[Splits, QualityReport]:
    data = recipe.data
    frames = {name: conversations_of(frame, data) for name, frame in read_splits(data, recipe.base_dir).items()}
    frames, notes = carve_pool(frames, data.split, "conversations", take_rows)
    for name, cap in (data.limit or {}).items():
        if name in frames and len(frames[name]) > cap:
            notes.append(f"{name}: {cap:,} conversations sampled from {len(frames[name]):,} (data.limit.{name})")
            frames[name] = sample(frames[name], cap, data.split.seed)
    notes += [turn_counts(name, frame) for name, frame in frames.items()]
    splits = Splits({name: frames[name] for name in SPLITS if name in frames}, notes=notes)
    return splits, check_quality(splits, recipe.quality, ["text"], classification=False)


def read_splits(data, base_dir) -> dict[str, pd.DataFrame]:
    """The frames of data.source (or data.train) and of any split given on its own."""
    explicit = data.explicit_splits()
    pool = explicit.pop("train", None) or data.source
    if pool is None:
        raise DataError("no training data: set data.source (split automatically) or data.train")
    got = read_source(pool, data, base_dir)
    frames = dict(got) if isinstance(got, dict) else {"train": got}
    if "train" not in frames:
        raise DataError(f"{pool} holds splits {', '.join(frames)} but no train split")
    for name, source in explicit.items():
        one = read_source(source, data, base_dir)
        if isinstance(one, dict):
            if name not in one:
                raise DataError(f"data.{name}: {source} holds splits {', '.join(one)}; none is {name}")
            one = one[name]
        frames[name] = one
    return frames


def sample(frame: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=cap, replace=False))
    return frame.iloc[keep].reset_index(drop=True)


def turn_counts(name: str, frame: pd.DataFrame) -> str:
    replies = frame["messages"].map(lambda turns: sum(t["role"] == "assistant" for t in turns))
    multi = int((replies > 1).sum())
    return f"{name}: {len(frame):,} conversations, {int(replies.sum()):,} replies, {multi:,} with several replies"
