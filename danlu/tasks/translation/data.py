"""The translation data stage: pairs of sentences read, checked and split.

A split is either a pair of aligned line files, `[train.en.gz, train.de.gz]` (source side first; one
sentence per line, line i of one translating line i of the other; .gz read as such), or a table
(tsv, csv, jsonl, json, parquet; a list of tables is stacked) with `source` and `target` columns
(other names through data.columns). Parallel files of different lengths stop at once, naming both
files and their line counts: nothing after that line could be trusted to be aligned.

The gate's rules, each naming its lines: `empty_side` (a pair with an empty source or target; always
left out, failing beyond quality.max_missing), `length_ratio` (a target/source length ratio beyond
translation.max_length_ratio times the training median, either way: a misaligned or truncated pair;
left out of training, failing beyond translation.max_extreme_share of a split), `duplicates`
(quality.max_duplicates) and `leakage` (validation/test sources also in train, quality.max_leakage).
Splits: data.train / validation / test, or one data.source cut by data.split (shares or counts, seed).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from danlu.data import QualityReport, Rule, Splits
from danlu.data.config import SPLIT_NAMES
from danlu.data.paths import display_path, resolve_data_paths
from danlu.data.sources import EXTENSIONS, read_source, read_text
from danlu.data.splits import carve_pool, map_columns, take_rows
from danlu.errors import DataError

ROLES = ("source", "target")
TARGET_FILE = "_target_file"  # where the target side of a pair of line files came from
EXAMPLES = 5  # lines a rule lists
# Characters added to both lengths before their ratio is taken: "Ja." against "Yes, indeed." is no
# misalignment, 3 characters against 300 is.
RATIO_SMOOTHING = 5


def load(recipe) -> tuple[Splits, QualityReport]:
    data = recipe.data
    frames, notes = carve_pool(read_splits(data, recipe.base_dir), data.split, "pairs", take_rows)
    sampled = {}
    for name, cap in (data.limit or {}).items():
        if name in frames and len(frames[name]) > cap:
            sampled[name] = len(frames[name])
            keep = np.sort(np.random.default_rng(data.split.seed).choice(len(frames[name]), cap, replace=False))
            frames[name] = frames[name].iloc[keep].reset_index(drop=True)
            notes.append(f"{name}: {cap:,} pairs sampled from {sampled[name]:,} (data.limit.{name}, seed {data.split.seed})")
    splits = Splits({name: frames[name] for name in SPLIT_NAMES if name in frames}, notes=notes, sampled_from=sampled)
    return splits, gate(splits, recipe)


# -- reading --------------------------------------------------------------------------
def read_splits(data, recipe_dir: Path | None) -> dict[str, pd.DataFrame]:
    explicit = data.explicit_splits()
    pool = explicit.pop("train", None) or data.source
    if pool is None:
        raise DataError("no training data: set data.train (a pair [source file, target file] or a table) "
                        "or data.source (split automatically)")
    out = {"train": read_pairs(pool, data, recipe_dir)}
    for name, source in explicit.items():
        out[name] = read_pairs(source, data, recipe_dir)
    return out


def read_pairs(source, data, recipe_dir: Path | None) -> pd.DataFrame:
    """The pairs of one split's source: two aligned line files, or one or more tables."""
    if isinstance(source, dict) or (isinstance(source, str) and source.startswith(("builtin:", "hub:"))):
        raise DataError(f"{source}: translation reads sentence pairs from files (two aligned line files, or a "
                        "table with source and target columns), not a built-in or hub data set")
    paths = [p for item in ([source] if isinstance(source, str) else source) for p in resolve_data_paths(item, recipe_dir)]
    for path in paths:
        if path.is_dir():
            raise DataError(f"{display_path(path)} is a folder; give the files of sentence pairs")
    lines = [p for p in paths if is_line_file(p, data.format)]
    if not lines:
        frames = [read_table(p, data, recipe_dir) for p in paths]
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(paths) != 2 or len(lines) != 2:
        listed = ", ".join(display_path(p) for p in paths)
        raise DataError(f"{listed}: line files come in pairs, [source file, target file] (e.g. [train.en.gz, "
                        "train.de.gz]); a table with source and target columns may stand alone")
    return read_parallel(paths[0], paths[1])


def is_line_file(path: Path, declared: str) -> bool:
    """One sentence per line: .txt, or a language suffix (.en, .de.gz) that names no table format."""
    if declared != "auto":
        return declared == "txt"
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    return EXTENSIONS.get(suffixes[-1] if suffixes else "", "txt") == "txt"


def lines_of(path: Path) -> list[str]:
    text = read_text(path)
    lines = text.split("\n")  # not splitlines(): U+2028 and friends may stand inside a sentence
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line starts no new one
    return [line.rstrip("\r") for line in lines]


def read_parallel(source_path: Path, target_path: Path) -> pd.DataFrame:
    source, target = lines_of(source_path), lines_of(target_path)
    if len(source) != len(target):
        raise DataError(f"{display_path(source_path)} has {len(source):,} lines but {display_path(target_path)} has "
                        f"{len(target):,}: parallel files are aligned line by line (line i of one translates line i "
                        "of the other), so they must have as many lines; find the missing or extra line")
    if not source:
        raise DataError(f"{display_path(source_path)} and {display_path(target_path)} are empty")
    return pd.DataFrame({"source": source, "target": target, "_row": np.arange(1, len(source) + 1, dtype=np.int64),
                         "_source": str(source_path), TARGET_FILE: str(target_path)})


def read_table(path: Path, data, recipe_dir: Path | None) -> pd.DataFrame:
    frame = read_source(str(path), data, recipe_dir)
    if isinstance(frame, dict):
        raise DataError(f"{display_path(path)} holds splits ({', '.join(frame)}); give one file per split")
    frame = map_columns(frame, data, ROLES)
    out = frame[[*ROLES, "_row", "_source"]].copy()
    for role in ROLES:  # a sentence is text, even when a column happens to read as numbers
        out[role] = out[role].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return out.reset_index(drop=True)


# -- splitting ------------------------------------------------------------------------
# -- the gate -------------------------------------------------------------------------
def gate(splits: Splits, recipe) -> QualityReport:
    quality, cfg = recipe.quality, recipe.translation
    read = splits.sizes()
    rules = [empty_rule(splits, quality.max_missing, cfg)]
    rules.append(ratio_rule(splits, cfg.max_length_ratio, cfg.max_extreme_share))
    rules.append(duplicates_rule(splits.frames, quality.max_duplicates))
    if len(splits.frames) > 1:
        rules.append(leakage_rule(splits.frames, quality.max_leakage))
    if not len(splits.frames["train"]):
        rules.append(Rule("train_rows", False, 0, 1, 0, [], "no training pairs are left once the pairs above are "
                                                            "left out", fatal=True))
    counts = {name: {"read": read[name], "kept": len(frame)} for name, frame in splits.frames.items()}
    for name, total in splits.sampled_from.items():
        counts[name]["sampled_from"] = total
    lengths = {name: {f"{side} characters": _stats(frame[side].str.len()) for side in ROLES}
               for name, frame in splits.frames.items()}
    return QualityReport(rules=rules, counts=counts, text_lengths=lengths, dropped=splits.dropped,
                         notes=list(splits.notes))


def where(frame: pd.DataFrame, i: int, side: str = "source") -> str:
    """"train.en.gz line 12": the file and line of the pair at position i, on one side."""
    column = TARGET_FILE if side == "target" and TARGET_FILE in frame else "_source"
    return f"{display_path(frame[column].iloc[i])} line {int(frame['_row'].iloc[i])}"


def empty_rule(splits: Splits, allowed: float, cfg) -> Rule:
    worst, count, examples, first = 0.0, 0, [], None
    for name, frame in list(splits.frames.items()):
        no_source = frame["source"].str.strip().eq("").to_numpy()
        no_target = frame["target"].str.strip().eq("").to_numpy()
        empty = no_source | no_target
        if not empty.any():
            continue
        count += int(empty.sum())
        worst = max(worst, float(empty.mean()))
        for i in np.flatnonzero(empty)[:EXAMPLES - len(examples)]:
            side = "target" if no_target[i] and not no_source[i] else "source"
            examples.append(where(frame, int(i), side))
        if first is None:
            i = int(np.flatnonzero(empty)[0])
            first = _empty_pair(frame, i, bool(no_source[i]), bool(no_target[i]), cfg)
        splits.drop(name, empty, "an empty side")
    if not count:
        return Rule("empty_side", True, 0.0, allowed, 0, [], "every pair has a source and a target")
    message = (f"{count:,} pair{'s' * (count != 1)} with an empty side (worst split {worst:.2%}), left out; "
               f"first: {first}")
    return Rule("empty_side", worst <= allowed, worst, allowed, count, examples, message)


def _empty_pair(frame: pd.DataFrame, i: int, no_source: bool, no_target: bool, cfg) -> str:
    if no_source and no_target:
        return f"{where(frame, i)}: both sides are empty"
    side, other = ("source", "target") if no_source else ("target", "source")
    language = cfg.target_language if other == "target" else cfg.source_language
    return f"{where(frame, i, side)}: the {side} is empty (its {language} side: {frame[other].iloc[i][:60]!r})"


def log_ratios(frame: pd.DataFrame) -> np.ndarray:
    source = frame["source"].str.len().to_numpy(dtype=np.float64)
    target = frame["target"].str.len().to_numpy(dtype=np.float64)
    return np.log((target + RATIO_SMOOTHING) / (source + RATIO_SMOOTHING))


def ratio_rule(splits: Splits, factor: float, allowed: float) -> Rule:
    # Against the training median, not 1: Chinese takes a third of the characters English does.
    train = splits.frames["train"]
    if not len(train):
        return Rule("length_ratio", True, 0.0, allowed, 0, [], "no training pairs to measure")
    median = float(np.median(log_ratios(train)))
    worst, count, examples, listed = 0.0, 0, [], []
    for name, frame in list(splits.frames.items()):
        extreme = np.abs(log_ratios(frame) - median) > math.log(factor)
        if not extreme.any():
            continue
        count += int(extreme.sum())
        worst = max(worst, float(extreme.mean()))
        for i in np.flatnonzero(extreme)[:EXAMPLES - len(examples)]:
            examples.append(where(frame, int(i)))
            source, target = frame["source"].iloc[i], frame["target"].iloc[i]
            listed.append(f"{where(frame, int(i))} ({len(source)} characters, {source[:40]!r} -> {len(target)}, "
                          f"{target[:40]!r})")
        if name == "train":
            splits.drop(name, extreme, "extreme length ratio")
    typical = f"the training median target/source length ratio is {math.exp(median):.2f}"
    if not count:
        return Rule("length_ratio", True, 0.0, allowed, 0, [], f"no pair beyond {factor:g}x; {typical}")
    message = (f"{count:,} pair{'s' * (count != 1)} whose length ratio is beyond {factor:g}x the typical one "
               f"({typical}; worst split {worst:.2%}): {'; '.join(listed)}; misaligned or cut off? Left out of "
               "training, kept in validation and test")
    return Rule("length_ratio", worst <= allowed, worst, allowed, count, examples, message)


def duplicates_rule(frames: dict[str, pd.DataFrame], allowed: float) -> Rule:
    worst, count, examples = 0.0, 0, []
    for name, frame in frames.items():
        dup = (frame["source"] + "\x1f" + frame["target"]).duplicated().to_numpy()
        if dup.any():
            count += int(dup.sum())
            worst = max(worst, float(dup.mean()))
            examples += [where(frame, int(i)) for i in np.flatnonzero(dup)[:EXAMPLES]]
    message = (f"{count:,} pair{'s' * (count != 1)} repeat an earlier one of their split (worst split {worst:.2%})"
               if count else "no duplicate pairs")
    return Rule("duplicates", worst <= allowed, worst, allowed, count, examples[:EXAMPLES], message)


def leakage_rule(frames: dict[str, pd.DataFrame], allowed: float) -> Rule:
    seen = set(frames["train"]["source"])
    total, count, examples = 0, 0, []
    for name in ("validation", "test"):
        if name in frames:
            leaked = frames[name]["source"].isin(seen).to_numpy()
            total += len(leaked)
            count += int(leaked.sum())
            examples += [where(frames[name], int(i)) for i in np.flatnonzero(leaked)[:EXAMPLES]]
    share = count / total if total else 0.0
    message = (f"{count:,} validation/test source sentence{'s' * (count != 1)} ({share:.2%}) also "
               f"stand{'s' * (count == 1)} in train"
               if count else "no validation/test source sentence appears in train")
    return Rule("leakage", share <= allowed, share, allowed, count, examples[:EXAMPLES], message)


def _stats(values: pd.Series) -> dict[str, float]:
    array = np.asarray(values.tolist() or [0], dtype=np.float64)
    return {"min": float(array.min()), "mean": float(array.mean()), "p95": float(np.percentile(array, 95)),
            "max": float(array.max())}
