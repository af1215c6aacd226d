"""The quality gate's video rules: clips that cannot be decoded (dropped and named, like unreadable images),
the frame counts and durations found, and the frame sizes, rates and codecs. A clip's fingerprint (of its
decoded frames) is its input key, so the generic duplicate and leakage rules see re-encoded copies."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from danlu.data.audio_quality import _durations  # one duration rule for clips of sound and of pictures
from danlu.data.config import QualityConfig
from danlu.data.paths import display_path
from danlu.data.report import Rule
from danlu.data.splits import Splits
from danlu.data.video import ClipFacts, clip_facts

_EXAMPLES = 5


def unreadable(splits: Splits, quality: QualityConfig) -> tuple[Rule, dict[str, pd.Series], dict[str, list]]:
    """Decode every clip once: (the rule, split -> fingerprints, split -> ClipFacts of the kept rows)."""
    keys: dict[str, pd.Series] = {}
    facts: dict[str, list[ClipFacts]] = {}
    rows, first = [], ""
    with ThreadPoolExecutor(max_workers=4) as pool:  # FFmpeg decodes outside the GIL
        for split, frame in list(splits.frames.items()):
            results = list(pool.map(clip_facts, frame["video"], chunksize=16))
            bad = np.array([err is not None for _, err in results], dtype=bool)
            if bad.any():
                at = int(np.flatnonzero(bad)[0])
                if not first:
                    value = frame["video"].iloc[at]
                    shown = display_path(value) if isinstance(value, str) else type(value).__name__
                    first = f"{split}:{int(frame['_row'].iloc[at])} {shown}: {results[at][1]}"
                rows += [f"{split}:{int(r)}" for r in frame.loc[bad, "_row"]]
                splits.drop(split, bad, "unreadable video")
            facts[split] = [f for f, err in results if err is None]
            keys[split] = pd.Series([f.digest for f in facts[split]], dtype="str")
    count = len(rows)
    message = (f"{count:,} video clip{'s' * (count != 1)} cannot be read (dropped from training); first: {first}"
               if count else "every video clip decodes")
    rule = Rule("unreadable", count <= quality.max_unreadable, count, quality.max_unreadable, count,
                rows[:_EXAMPLES], message)
    return rule, keys, facts


def clip_rules(splits: Splits, facts: dict[str, list[ClipFacts]], quality: QualityConfig) -> list[Rule]:
    # Frame folders have no rate, so no duration: a split with one is left out of the duration rule.
    timed = {s: fs for s, fs in facts.items() if fs and all(f.fps for f in fs)}
    return [_frame_counts(facts), _durations(splits, timed, quality), _formats(facts)]


def _frame_counts(facts: dict[str, list[ClipFacts]]) -> Rule:
    counts = np.asarray([f.frames for fs in facts.values() for f in fs])
    if not len(counts):
        return Rule("frames", True, None, None, 0, [], "no clips")
    message = (f"frames per clip {counts.min():,} / {int(np.median(counts)):,} / {counts.max():,} (min / median / "
               f"max) over {len(counts):,} clips; each is sampled uniformly to video.frames")
    return Rule("frames", True, int(np.median(counts)), None, len(counts), [], message)


def _formats(facts: dict[str, list[ClipFacts]]) -> Rule:
    every = [f for fs in facts.values() for f in fs]
    sizes = Counter(f"{f.width}x{f.height}" for f in every)
    rates = Counter(f"{f.fps:g} fps" if f.fps else "no rate" for f in every)
    codecs = Counter(f.codec for f in every)

    def listed(counts: Counter) -> str:
        return ", ".join(f"{value} ({n:,})" for value, n in counts.most_common(5))

    message = (f"frame sizes {listed(sizes)}; rates {listed(rates)}; codecs {listed(codecs)}; every frame is "
               "resized to video.size")
    return Rule("video_format", True, len(sizes), None, len(every), [], message)
