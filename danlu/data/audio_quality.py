"""The quality gate's audio rules: clips that cannot be read (dropped, like unreadable images), their
durations and outliers, the sample rates and channel counts found, silent clips, and transcripts that
use characters no training transcript has (the model cannot write them)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from danlu.data.audio import SILENT_DBFS, ClipFacts, clip_facts
from danlu.data.config import QualityConfig
from danlu.data.paths import display_path
from danlu.data.report import Rule
from danlu.data.splits import Splits

_EXAMPLES = 5


def _examples(found: list[tuple[str, list]]) -> list[str]:
    return [f"{split}:{int(row)}" for split, rows in found for row in rows][:_EXAMPLES]


def unreadable(splits: Splits, quality: QualityConfig) -> tuple[Rule, dict[str, pd.Series], dict[str, list]]:
    """Decode every clip once: (the rule, split -> content digests, split -> ClipFacts of the kept rows)."""
    keys: dict[str, pd.Series] = {}
    facts: dict[str, list[ClipFacts]] = {}
    found, first = [], ""
    # Threads: libsndfile decodes outside the GIL.
    with ThreadPoolExecutor(max_workers=4) as pool:
        for split, frame in list(splits.frames.items()):
            results = list(pool.map(clip_facts, frame["audio"], chunksize=32))
            bad = np.array([err is not None for _, err in results], dtype=bool)
            if bad.any():
                at = int(np.flatnonzero(bad)[0])
                if not first:
                    value = frame["audio"].iloc[at]
                    shown = display_path(value) if isinstance(value, str) else type(value).__name__
                    first = f"{split}:{int(frame['_row'].iloc[at])} {shown}: {results[at][1]}"
                found.append((split, frame.loc[bad, "_row"].tolist()))
                splits.drop(split, bad, "unreadable audio")
            kept = [f for f, err in results if err is None]
            facts[split] = kept
            keys[split] = pd.Series([f.digest for f in kept], dtype="str")
    count = sum(len(rows) for _, rows in found)
    message = (f"{count:,} audio clip{'s' * (count != 1)} cannot be read (dropped from training); first: {first}"
               if count else "every audio clip decodes")
    rule = Rule("unreadable", count <= quality.max_unreadable, count, quality.max_unreadable, count,
                _examples(found), message)
    return rule, keys, facts


def clip_rules(splits: Splits, facts: dict[str, list[ClipFacts]], quality: QualityConfig) -> list[Rule]:
    rules = [_durations(splits, facts, quality), _formats(facts), _silent(splits, facts, quality)]
    if "transcript" in splits.frames.get("train", ()):
        rules.append(_transcript_chars(splits))
    return rules


def _durations(splits: Splits, facts: dict[str, list[ClipFacts]], quality: QualityConfig) -> Rule:
    seconds = {s: np.asarray([f.seconds for f in fs]) for s, fs in facts.items() if fs}
    every = np.concatenate(list(seconds.values())) if seconds else np.zeros(0)
    if not len(every):
        return Rule("duration", True, None, None, 0, [], "no clips")
    low, high = quality.min_seconds, quality.max_seconds
    found = []
    q1, q3 = np.percentile(every, [25, 75])
    fence = q3 + 3 * (q3 - q1)  # Tukey's far-out fence: only clips far beyond the rest
    outliers = int((every > fence).sum())
    for split, values in seconds.items():
        bad = np.zeros(len(values), dtype=bool)
        if low is not None:
            bad |= values < low
        if high is not None:
            bad |= values > high
        if bad.any():
            found.append((split, splits.frames[split].loc[bad, "_row"].tolist()))
    count = sum(len(rows) for _, rows in found)
    stats = (f"durations {every.min():.2f} / {np.median(every):.2f} / {every.max():.2f} s (min / median / max) over "
             f"{len(every):,} clips, {every.sum() / 60:.1f} minutes in all")
    if outliers:
        stats += f"; {outliers:,} far longer than the rest (over {fence:.2f} s)"
    if count:
        stats += f"; {count:,} outside quality.min_seconds / max_seconds ({low} - {high} s)"
    return Rule("duration", count == 0, count, high, count, _examples(found), stats)


def _formats(facts: dict[str, list[ClipFacts]]) -> Rule:
    every = [f for fs in facts.values() for f in fs]
    rates = Counter(f.sample_rate for f in every)
    channels = Counter(f.channels for f in every)

    def listed(counts: Counter, unit: str) -> str:
        return ", ".join(f"{value:,} {unit} ({n:,})" for value, n in counts.most_common())

    message = (f"sample rates {listed(rates, 'Hz')}; channels {listed(channels, 'ch')}; every clip is read as mono "
               "at the model's rate")
    return Rule("audio_format", True, len(rates), None, len(every), [], message)


def _silent(splits: Splits, facts: dict[str, list[ClipFacts]], quality: QualityConfig) -> Rule:
    found, worst = [], 0.0
    for split, fs in facts.items():
        quiet = np.asarray([f.peak_dbfs < SILENT_DBFS for f in fs], dtype=bool)
        if quiet.any():
            found.append((split, splits.frames[split].loc[quiet, "_row"].tolist()))
            worst = max(worst, float(quiet.mean()))
    count = sum(len(rows) for _, rows in found)
    message = (f"{count:,} clip{'s' * (count != 1)} silent (loudest 50 ms under {SILENT_DBFS:g} dBFS; worst split "
               f"{worst:.2%})" if count else "no silent clip")
    return Rule("silent", worst <= quality.max_silent, worst, quality.max_silent, count, _examples(found), message)


def _transcript_chars(splits: Splits) -> Rule:
    seen = set("".join(splits.frames["train"]["transcript"].astype(str)))
    found, unknown = [], Counter()
    for split in ("validation", "test"):
        frame = splits.frames.get(split)
        if frame is None or "transcript" not in frame:
            continue
        extra = frame["transcript"].astype(str).map(lambda t: set(t) - seen)
        bad = extra.map(bool).to_numpy(dtype=bool)
        if bad.any():
            found.append((split, frame.loc[bad, "_row"].tolist()))
            for chars in extra[bad]:
                unknown.update(chars)
    count = sum(len(rows) for _, rows in found)
    shown = ", ".join(repr(c) for c, _ in unknown.most_common(10))
    message = (f"{count:,} held-out transcript{'s' * (count != 1)} use characters no training transcript has "
               f"({shown}): the model cannot write them" if count
               else "every held-out transcript is written with the training transcripts' characters")
    return Rule("transcript_chars", count == 0, count, 0, count, _examples(found), message)
