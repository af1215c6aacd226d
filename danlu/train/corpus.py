"""The pretraining corpus: a file (or files) of raw text, or the task's own training inputs.

Reading goes through the data stage's readers, so a corpus gets the same messages as task data
(a file that is not UTF-8 names its line, an empty file says so). What is specific to a corpus
is checked here: the column exists, and it holds text rather than numbers or nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from danlu.data.config import DataConfig
from danlu.data.paths import display_path
from danlu.errors import DataError

_WORDLIKE = re.compile(r"[^\W\d_]", re.UNICODE)  # a letter in any script (Latin, Han, ...)


def load_corpus(cfg, train_frame: pd.DataFrame, recipe_dir: Path | None, whole_files: bool = False) -> list[str]:
    """The texts to pretrain on. `whole_files`: a txt file is one document (causal-lm), not one per line."""
    from danlu.data.sources import read_source

    if cfg.corpus is None:
        if "text" not in train_frame:
            raise DataError("pretrain.corpus: the task's training split has no text column to pretrain on")
        return _texts(train_frame["text"], "the training split's text column")
    data = DataConfig(source=cfg.corpus, txt="file" if whole_files else "lines")
    frame = read_source(cfg.corpus, data, recipe_dir)
    if isinstance(frame, dict):  # a source holding splits: its train split is the corpus
        frame = frame.get("train", next(iter(frame.values())))
    column = cfg.column
    if column not in frame.columns:
        columns = [c for c in frame.columns if not str(c).startswith("_")]
        raise DataError(f"pretrain.corpus: {cfg.corpus} has no column '{column}' (columns: {', '.join(map(str, columns))}); "
                        "set pretrain.column")
    return _texts(frame[column], display_path(cfg.corpus) if Path(cfg.corpus).exists() else cfg.corpus)


def _texts(values: pd.Series, where: str) -> list[str]:
    texts = [str(v) for v in values.dropna().tolist() if str(v).strip()]
    if not texts:
        raise DataError(f"pretrain.corpus: {where} is empty: there is no text to pretrain on")
    wordy = sum(1 for t in texts if _WORDLIKE.search(t))
    if wordy < len(texts) / 2:
        sample = ", ".join(repr(t[:30]) for t in texts[:3])
        raise DataError(f"pretrain.corpus: {where} does not look like text: {len(texts) - wordy:,} of "
                        f"{len(texts):,} entries have no letters (e.g. {sample}); pretraining needs sentences")
    return texts
