"""The quality gate's `pii` rule: personal data in the text columns, counted per kind and column, then
left (warn), masked or dropped as quality.pii.action says. It runs before anything is fitted, so a
masked value never reaches the tokenizer; the report shows example rows masked whatever the action."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from danlu.data.config import PiiConfig
from danlu.data.report import Rule
from danlu.data.splits import Splits
from danlu.data.pii import find, mask

_EXAMPLES = 5
_SHOWN = 80  # characters of an example row


def pii_columns(splits: Splits, roles: list[str], config: PiiConfig) -> list[str]:
    if config.columns is not None:
        return list(config.columns)
    return [c for c in ("text",) if c in roles] + [c for c in splits.categorical if c not in roles]


def pii_rule(splits: Splits, roles: list[str], config: PiiConfig) -> Rule:
    columns = pii_columns(splits, roles, config)
    counts: Counter = Counter()  # (kind, column) -> matches
    examples: list[str] = []
    rows = 0
    for split in list(splits.frames):
        frame = splits.frames[split]
        hit = np.zeros(len(frame), dtype=bool)
        for column in columns:
            if column not in frame:
                continue
            values = frame[column].tolist()
            masked = list(values)
            for i, value in enumerate(values):
                if not isinstance(value, str):
                    continue
                found = find(value, config.kinds)
                if not found:
                    continue
                hit[i] = True
                counts.update((m.kind, column) for m in found)
                masked[i] = mask(value, found)
                if len(examples) < _EXAMPLES:
                    examples.append(f"{split}:{int(frame['_row'].iloc[i])} {masked[i][:_SHOWN]!r}")
            if config.action == "mask":
                frame[column] = pd.Series(masked, index=frame.index, dtype=frame[column].dtype)
        rows += int(hit.sum())
        if config.action == "drop":
            splits.drop(split, hit, "personal data")
    total = sum(counts.values())
    if not total:
        return Rule("pii", True, 0, None, 0, [], f"no personal data found in {', '.join(columns) or 'no column'}")
    per = "; ".join(f"{kind} in {column}: {n:,}" for (kind, column), n in sorted(counts.items()))
    done = {"warn": "left in place (quality.pii.action: warn; mask or drop to remove it)",
            "mask": "masked before training, the tokenizer included", "drop": "their rows dropped"}[config.action]
    return Rule("pii", True, total, None, rows, examples,
                f"{total:,} personal data values in {rows:,} rows ({per}); {done}")
