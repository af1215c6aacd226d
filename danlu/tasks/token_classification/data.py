"""The token-classification data stage: sentences of tagged tokens read, checked and split.

Two formats. CoNLL columns (any file that is not jsonl): one token per line, the token first and its
tag last, columns separated by a tab (then a token may hold spaces) or by spaces; a blank line ends a
sentence; `-DOCSTART-` lines are skipped. Chinese character-level files are the same, one character per
line. jsonl (.jsonl, .ndjson or data.format jsonl): one sentence per line, {"tokens": [...], "tags":
[...]} (other key names through data.columns.tokens / data.columns.tags).

A line that cannot be read (wrong column count, an empty token, a tag that is not O / B-X / I-X) stops
with one DataError naming the file and the line. Tags are read in the recipe's tagging.scheme and kept
as BIO; tags the scheme does not allow where they stand are the gate's `invalid_tags` rule, each named
by file and line. Splits: data.train / validation / test files, or one data.source cut by sentence
(data.split: shares or counts, seed, shuffle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from danlu.data import QualityReport, Rule, Splits
from danlu.data.config import SPLIT_NAMES
from danlu.data.paths import display_path, resolve_data_paths
from danlu.data.sources import read_jsonl, read_text
from danlu.data.splits import carve_pool
from danlu.errors import DataError
from danlu.tasks.token_classification.tags import invalid_tags, spans, split_tag, to_bio

DOCSTART = "-DOCSTART-"
JSONL = (".jsonl", ".ndjson")
EXAMPLES = 5  # file:line examples a rule lists
CHAR_LEVEL = 0.9  # share of single-character tokens above which sentences are characters (Chinese)


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str]  # as written in the file, in its scheme
    lines: list[int]  # of each token (jsonl: the sentence's line for each)
    source: str
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line, why) of tags the scheme refuses


def load(recipe) -> tuple[Splits, QualityReport]:
    data, cfg = recipe.data, recipe.tagging
    sentences = read_splits(data, cfg.scheme, recipe.base_dir)
    pools, notes = carve_pool(sentences, data.split, "sentences", lambda pool, index: [pool[i] for i in index])
    chars = is_char_level(s.tokens for s in pools["train"])
    sampled = {}
    for name, cap in (data.limit or {}).items():
        if name in pools and len(pools[name]) > cap:
            sampled[name] = len(pools[name])
            keep = np.sort(np.random.default_rng(data.split.seed).choice(len(pools[name]), cap, replace=False))
            pools[name] = [pools[name][i] for i in keep]
            notes.append(f"{name}: {cap:,} sentences sampled from {sampled[name]:,} (data.limit.{name}, "
                         f"seed {data.split.seed})")
    frames = {name: frame_of(pools[name], chars) for name in SPLIT_NAMES if name in pools}
    if chars:
        notes.append("the training tokens are single characters: sentences are shown joined without spaces")
    splits = Splits(frames, notes=notes, sampled_from=sampled)
    return splits, report_of(pools, frames, recipe, notes)


# -- reading --------------------------------------------------------------------------
def read_splits(data, scheme: str, recipe_dir: Path | None) -> dict[str, list[Sentence]]:
    explicit = data.explicit_splits()
    pool = explicit.pop("train", None) or data.source
    if pool is None:
        raise DataError("no training data: set data.source (split by sentence) or data.train")
    out = {"train": read_source(pool, data, scheme, recipe_dir)}
    for name, source in explicit.items():
        out[name] = read_source(source, data, scheme, recipe_dir)
    return out


def read_source(source, data, scheme: str, recipe_dir: Path | None) -> list[Sentence]:
    if isinstance(source, dict) or (isinstance(source, str) and source.startswith(("builtin:", "hub:"))):
        raise DataError(f"{source}: token classification reads files of tagged tokens (CoNLL columns or jsonl "
                        "with tokens and tags), not a table or a hub data set")
    items = [source] if isinstance(source, str) else list(source)
    sentences = []
    for item in items:
        for path in resolve_data_paths(item, recipe_dir):
            if path.is_dir():
                raise DataError(f"{display_path(path)} is a folder; give the CoNLL or jsonl file")
            jsonl = data.format == "jsonl" or _suffix(path) in JSONL
            sentences += read_jsonl_sentences(path, data, scheme) if jsonl else read_conll(path, scheme)
    if not sentences:
        raise DataError(f"{source}: no sentences (an empty file, or only -DOCSTART- lines)")
    return sentences


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    return suffixes[-1] if suffixes else ""


def read_conll(path: Path, scheme: str = "bio") -> list[Sentence]:
    """The sentences of a CoNLL column file; a line that cannot be read is a DataError naming it."""
    name = display_path(path)
    sentences: list[Sentence] = []
    tokens, tags, lines = [], [], []
    width = None  # (columns, line) of the first token line: every other one must match it

    def close():
        if tokens:
            sentences.append(_checked(Sentence(list(tokens), list(tags), list(lines), name), scheme))
            tokens.clear(), tags.clear(), lines.clear()

    for number, raw in enumerate(read_text(path).split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            close()
            continue
        fields = [f.strip() for f in line.split("\t")] if "\t" in line else line.split()
        if fields[0] == DOCSTART:
            close()
            continue
        if len(fields) < 2:
            raise DataError(f"{name} line {number}: one column ({line.strip()[:60]!r}); a token line holds the "
                            "token first and its tag last, separated by a tab or spaces")
        if width is None:
            width = (len(fields), number)
        elif len(fields) != width[0]:
            raise DataError(f"{name} line {number}: {len(fields)} columns, but line {width[1]} has {width[0]}; "
                            "every token line has the same columns (the token first, the tag last)")
        if not fields[0]:
            raise DataError(f"{name} line {number}: the token (first column) is empty")
        _tag_shape(fields[-1], name, number, scheme)
        tokens.append(fields[0])
        tags.append(fields[-1])
        lines.append(number)
    close()
    return sentences


def read_jsonl_sentences(path: Path, data, scheme: str = "bio") -> list[Sentence]:
    name = display_path(path)
    frame = read_jsonl(path)
    keys = {}
    for role in ("tokens", "tags"):
        keys[role] = next((c for c in data.role_columns(role) if c in frame.columns), None)
        if keys[role] is None:
            raise DataError(f"{name}: no key {' or '.join(data.role_columns(role))} for the {role}; each line is "
                            f'{{"tokens": [...], "tags": [...]}} (or set data.columns.{role})')
    sentences = []
    for tokens, tags, number in zip(frame[keys["tokens"]], frame[keys["tags"]], frame["_row"]):
        number = int(number)
        for what, value in (("tokens", tokens), ("tags", tags)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise DataError(f"{name} line {number}: {keys[what]} is not a list of strings")
        if len(tokens) != len(tags):
            raise DataError(f"{name} line {number}: {len(tokens)} tokens but {len(tags)} tags")
        if not tokens:
            continue
        empty = next((i for i, t in enumerate(tokens) if not t.strip()), None)
        if empty is not None:
            raise DataError(f"{name} line {number}: token {empty + 1} is empty")
        for tag in tags:
            _tag_shape(tag, name, number, scheme)
        sentences.append(_checked(Sentence(list(tokens), list(tags), [number] * len(tokens), name), scheme))
    return sentences


def _tag_shape(tag: str, name: str, number: int, scheme: str) -> None:
    try:
        split_tag(tag)
    except ValueError as exc:
        raise DataError(f"{name} line {number}: {exc} (tagging.scheme: {scheme})") from None


def _checked(sentence: Sentence, scheme: str) -> Sentence:
    sentence.invalid = [(sentence.lines[bad.position], bad.why) for bad in invalid_tags(sentence.tags, scheme)]
    return sentence


# -- splitting ------------------------------------------------------------------------
def is_char_level(token_lists) -> bool:
    """Sentences of characters (Chinese, one character per token), not of words."""
    single = total = 0
    for tokens in token_lists:
        single += sum(len(t) == 1 for t in tokens)
        total += len(tokens)
    return bool(total) and single / total >= CHAR_LEVEL


def frame_of(sentences: list[Sentence], chars: bool = False) -> pd.DataFrame:
    """One row per sentence: text (the tokens joined: by nothing for characters, else a space), tokens,
    label (BIO tags), _row (the line of its first token) and _source."""
    join = "" if chars else " "
    return pd.DataFrame({
        "text": [join.join(s.tokens) for s in sentences],
        "tokens": [s.tokens for s in sentences],
        "label": [to_bio(s.tags) for s in sentences],
        "_row": np.asarray([s.lines[0] for s in sentences], dtype=np.int64),
        "_source": [s.source for s in sentences],
    })


# -- the gate -------------------------------------------------------------------------
def report_of(pools: dict[str, list[Sentence]], frames: dict[str, pd.DataFrame], recipe, notes) -> QualityReport:
    quality, cfg = recipe.quality, recipe.tagging
    rules = [invalid_rule(pools, cfg.scheme, cfg.max_invalid), duplicates_rule(frames, quality.max_duplicates)]
    if len(frames) > 1:
        rules.append(leakage_rule(frames, quality.max_leakage))
    rules.append(unseen_types_rule(frames))
    counts = {name: {"read": len(frame), "kept": len(frame)} for name, frame in frames.items()}
    labels = {name: entity_counts(frame["label"]) for name, frame in frames.items()}
    lengths = {name: {"tokens": _stats([len(t) for t in frame["tokens"]])} for name, frame in frames.items()}
    return QualityReport(rules=rules, counts=counts, labels=labels, text_lengths=lengths, notes=list(notes))


def invalid_rule(pools: dict[str, list[Sentence]], scheme: str, allowed: int) -> Rule:
    found = [(s.source, line, why) for name in SPLIT_NAMES for s in pools.get(name, ()) for line, why in s.invalid]
    if not found:
        return Rule("invalid_tags", True, 0, allowed, 0, [], f"every tag sequence is valid {scheme.upper()}")
    source, line, why = found[0]
    message = (f"{len(found):,} tag{'s' * (len(found) != 1)} the {scheme.upper()} scheme does not allow where "
               f"{'they stand' if len(found) != 1 else 'it stands'}; first: {source} line {line}: {why}. Read as the "
               "start of an entity; fix the file, set tagging.scheme to the file's scheme, or allow them with "
               "tagging.max_invalid")
    examples = [f"{s}:{ln}" for s, ln, _ in found[:EXAMPLES]]
    return Rule("invalid_tags", len(found) <= allowed, len(found), allowed, len(found), examples, message)


def _key(frame: pd.DataFrame, with_tags: bool) -> pd.Series:
    keys = frame["tokens"].map(lambda t: "\x1f".join(t))
    return keys + "\x1e" + frame["label"].map(lambda t: " ".join(t)) if with_tags else keys


def duplicates_rule(frames: dict[str, pd.DataFrame], allowed: float) -> Rule:
    worst, count, examples = 0.0, 0, []
    for name, frame in frames.items():
        dup = _key(frame, True).duplicated().to_numpy()
        if dup.any():
            count += int(dup.sum())
            worst = max(worst, float(dup.mean()))
            examples += [f"{name}:{int(r)}" for r in frame.loc[dup, "_row"][:EXAMPLES]]
    message = (f"{count:,} sentence{'s' * (count != 1)} repeat an earlier one of their split, tags and all "
               f"(worst split {worst:.2%})" if count else "no duplicate sentences")
    return Rule("duplicates", worst <= allowed, worst, allowed, count, examples[:EXAMPLES], message)


def leakage_rule(frames: dict[str, pd.DataFrame], allowed: float) -> Rule:
    seen = set(_key(frames["train"], False))
    total, count, examples = 0, 0, []
    for name in ("validation", "test"):
        if name in frames:
            leaked = _key(frames[name], False).isin(seen).to_numpy()
            total += len(leaked)
            count += int(leaked.sum())
            examples += [f"{name}:{int(r)}" for r in frames[name].loc[leaked, "_row"][:EXAMPLES]]
    share = count / total if total else 0.0
    message = (f"{count:,} validation/test sentence{'s' * (count != 1)} ({share:.2%}) also stand in train"
               if count else "no validation/test sentence appears in train")
    return Rule("leakage", share <= allowed, share, allowed, count, examples[:EXAMPLES], message)


def unseen_types_rule(frames: dict[str, pd.DataFrame]) -> Rule:
    known = set(entity_counts(frames["train"]["label"]))
    unseen = {name: sorted(set(entity_counts(frame["label"])) - known) for name, frame in frames.items()}
    unseen = {name: kinds for name, kinds in unseen.items() if kinds}
    if not known:
        return Rule("entity_types", False, 0, 1, 0, [], "the training sentences hold no entity (every tag is O): "
                                                        "there is nothing to learn", fatal=True)
    if not unseen:
        return Rule("entity_types", True, 0, 0, 0, [], f"train has every entity type: {', '.join(sorted(known))}")
    listed = "; ".join(f"{name}: {', '.join(kinds)}" for name, kinds in unseen.items())
    count = sum(len(k) for k in unseen.values())
    return Rule("entity_types", False, count, 0, count, [],
                f"entity types never seen in train ({listed}): the model cannot predict them and could not score "
                "them; add training sentences that have them, or remove them", fatal=True)


def entity_counts(tag_lists) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tags in tag_lists:
        for span in spans(list(tags)):
            counts[span.kind] = counts.get(span.kind, 0) + 1
    return dict(sorted(counts.items()))


def _stats(values: list[int]) -> dict[str, float]:
    array = np.asarray(values or [0], dtype=np.float64)
    return {"min": float(array.min()), "mean": float(array.mean()), "p95": float(np.percentile(array, 95)),
            "max": float(array.max())}

