"""The quality gate: what is wrong with the data, where, and whether it is bad enough to stop.

Rows with an empty required field or an unreadable image are removed from the splits here,
whatever the thresholds say: a trainer must never see them; so are rows with an invalid value in a
numeric column unless quality.invalid says impute. Everything else is only reported.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from danlu.data.columns import column_rules
from danlu.data.config import QualityConfig
from danlu.data.images import image_fingerprint
from danlu.data.paths import display_path
from danlu.data.report import QualityReport, Rule, natural_order
from danlu.data.splits import INPUT_ROLES, Splits
from danlu.data.values import as_numbers, short_repr, spelled_missing

_EXAMPLES = 5
# Scripts written without spaces between words: CJK ideographs and punctuation, kana, full-width
# forms, Thai, Lao, Myanmar, Khmer.
_UNSPACED = (r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
             r"\uf900-\ufaff\uff00-\uffef]")


def check_quality(splits: Splits, quality: QualityConfig, roles: list[str], classification: bool) -> QualityReport:
    read = splits.sizes()
    rules = [_missing(splits, roles, quality)]
    image_keys: dict[str, pd.Series] = {}
    clips: dict[str, list] = {}
    if "image" in roles:
        rule, image_keys = _unreadable(splits, quality)
        rules.append(rule)
    if "audio" in roles:
        from danlu.data import audio_quality

        rule, image_keys, clips = audio_quality.unreadable(splits, quality)
        rules.append(rule)
    clip_gate = audio_quality if "audio" in roles else None
    if "video" in roles:
        from danlu.data import video_quality as clip_gate

        rule, image_keys, clips = clip_gate.unreadable(splits, quality)
        rules.append(rule)
    invalid = _invalid(splits, roles, quality, classification)
    rules += [invalid] if invalid else []
    _tidy_labels(splits, classification)
    if "objects" in roles:  # object annotations' own rules (boxes, categories, images without objects)
        from danlu.data.objects_quality import object_rules

        rules += object_rules(splits)
    if quality.pii is not None:
        from danlu.data.pii_quality import pii_rule

        rules.append(pii_rule(splits, roles, quality.pii))
    inputs = {s: _input_keys(f, splits.features, image_keys.get(s)) for s, f in splits.frames.items()}
    if clips:
        rules += clip_gate.clip_rules(splits, clips, quality)
    if any("_group" in f for f in splits.frames.values()):
        rules.append(_groups_apart(splits))
    rules.append(_duplicates(splits, inputs, quality))
    if "train" in inputs and len(inputs) > 1:
        rules.append(_leakage(splits, inputs, quality))
    labels: dict[str, dict[str, int]] = {}
    notes = list(splits.notes)
    if classification and "label" in roles and "train" in splits.frames:
        labels = {s: _label_counts(f["label"]) for s, f in splits.frames.items() if "label" in f}
        rules += _class_rules(labels["train"], quality)
        seen = set(labels["train"])
        for s, dist in labels.items():
            unseen = sorted(set(dist) - seen)
            if unseen:
                notes.append(f"{s} has labels never seen in train: {', '.join(unseen[:10])}")
    if splits.features and "train" in splits.frames:
        more, seen_notes = column_rules(splits.frames["train"], splits.features, splits.categorical, classification,
                                        quality.max_feature_agreement)
        rules += more
        notes += seen_notes
    if not len(splits.frames.get("train", ())):
        rules.append(Rule("train_rows", False, 0, 1, 0, [], "no training rows are left once the rows above are "
                          "dropped: there is nothing to train on", fatal=True))
    lengths = {}
    if "text" in roles:
        lengths = {s: _length_stats(f["text"]) for s, f in splits.frames.items() if "text" in f}
        unspaced = [s for s, units in lengths.items() if units and "words" not in units]
        if unspaced:
            notes.append(f"text length of {', '.join(unspaced)} in characters only: the texts are not written "
                         "with spaces between words (Chinese, Japanese, Thai...), so a word count would say nothing")
        if quality.max_text_length is not None:
            rules.append(_text_length(splits, quality.max_text_length))
    counts = {s: {"read": read[s], "kept": len(f)} for s, f in splits.frames.items()}
    for s, drawn in splits.sampled_from.items():
        counts[s]["sampled_from"] = drawn
    return QualityReport(rules, counts, labels, lengths, splits.dropped, notes)


def _n(count: int, word: str, plural: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else plural or word + 's'}"


def _v(count: int, one: str = "has", many: str = "have") -> str:
    return one if count == 1 else many


def _examples(pairs: list[tuple[str, pd.Series]]) -> list[str]:
    out: list[str] = []
    for split, rows in pairs:
        out += [f"{split}:{int(r)}" for r in rows[: _EXAMPLES - len(out)]]
    return out


def _missing(splits: Splits, roles: list[str], quality: QualityConfig) -> Rule:
    total = sum(splits.sizes().values()) or 1
    found: list[tuple[str, pd.Series]] = []
    kinds: set[str] = set()
    first = ""
    for split in list(splits.frames):
        columns = [r for r in roles if r in splits.frames[split]] + \
                  [c for c in splits.features if c in splits.frames[split] and c not in roles]
        for column in columns:  # dropping as we go: a row with two empty fields counts once
            frame = splits.frames[split]
            empty = _empty(frame[column], spelled=column not in INPUT_ROLES)
            if empty.any():
                kinds.add(column if column in roles else "feature")
                if not first:
                    first = _input_file(frame.loc[empty].iloc[0], column)
                found.append((split, frame.loc[empty, "_row"].tolist()))
                splits.drop(split, empty, f"missing {column}" if column in roles else "missing feature")
    count = sum(len(rows) for _, rows in found)
    share = count / total
    what = "/".join(sorted(kinds))
    message = (f"{_n(count, 'row')} ({share:.2%}) {_v(count)} an empty {what}; dropped from training{first}"
               if count else "no empty fields")
    return Rule("missing", share <= quality.max_missing, share, quality.max_missing, count,
                _examples(found), message)


def _input_file(row: pd.Series, column: str) -> str:
    """'; first: <the clip or image> has no <column>' where the row's input is a file (a transcript missing
    beside a clip is about that clip)."""
    for role in ("audio", "image"):
        value = row.get(role)
        if role != column and isinstance(value, str) and value.strip():
            return f"; first: {display_path(value)} has no {column}"
    return ""


def _empty(values: pd.Series, spelled: bool) -> np.ndarray:
    """spelled: a label or feature written as NaN, null, N/A... is a gap too; a text that says
    "none" is a text."""
    empty = values.isna().to_numpy(copy=True)
    if spelled:
        empty |= spelled_missing(values)
    elif isinstance(values.dtype, pd.StringDtype):
        empty |= values.str.strip().eq("").fillna(True).to_numpy(dtype=bool)
    elif values.dtype == object:
        empty |= values.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(dtype=bool)
    return empty


def _invalid(splits: Splits, roles: list[str], quality: QualityConfig, classification: bool) -> Rule | None:
    """Cells of numeric columns that are no finite number become gaps, counted with their rows, then
    handled as quality.invalid says. From here on those columns hold numbers only."""
    columns = [c for c in splits.features if c not in splits.categorical and c not in roles]
    if "label" in roles and not classification:
        columns.append("label")
    if not columns:
        return None
    found: list[tuple[str, list]] = []
    firsts: dict[str, tuple[int, str]] = {}  # column -> (cells, first cell and where)
    for split in list(splits.frames):
        features, labels = _numbers_in(splits.frames[split], split, columns, firsts)
        found.append((split, splits.frames[split].loc[features | labels, "_row"].tolist()))
        splits.drop(split, labels, "invalid label")  # a label cannot be imputed
        if quality.invalid != "impute":
            splits.drop(split, features[~labels], "invalid feature")
    rows = sum(len(r) for _, r in found)
    cells = sum(n for n, _ in firsts.values())
    stop = quality.invalid == "stop"
    if not cells:
        return Rule("invalid", True, 0, 0 if stop else None, 0, [], "every numeric value is a finite number",
                    fatal=stop)
    detail = "; ".join(f"{_column_name(c)}: {n:,} (first {where})" for c, (n, where) in firsts.items())
    message = (f"{_n(cells, 'value')} in numeric columns {_v(cells, 'is', 'are')} not a finite number ({detail}); "
               + _invalid_outcome(quality.invalid, "label" in firsts, len(firsts) > ("label" in firsts)))
    return Rule("invalid", not stop, cells, 0 if stop else None, rows, _examples(found), message, fatal=stop)


def _numbers_in(frame: pd.DataFrame, split: str, columns: list[str], firsts: dict) -> tuple[np.ndarray, np.ndarray]:
    """Turn `columns` of the frame into numbers; (rows with a bad feature cell, rows with a bad label)."""
    features, labels = np.zeros(len(frame), dtype=bool), np.zeros(len(frame), dtype=bool)
    for column in columns:
        if column not in frame:
            continue
        values = frame[column]
        numbers, bad = as_numbers(values)
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            where = f"{short_repr(values.iloc[at])} at {split}:{int(frame['_row'].iloc[at])}"
            n, where = firsts.get(column, (0, where))
            firsts[column] = (n + int(bad.sum()), where)
        if bad.any() or not pd.api.types.is_numeric_dtype(values):
            frame[column] = numbers
        if column == "label":
            labels |= bad
        else:
            features |= bad
    return features, labels


def _column_name(column: str) -> str:
    return "label" if column == "label" else f"feature '{column}'"


def _invalid_outcome(choice: str, labels: bool, features: bool) -> str:
    if choice == "stop":
        return ("quality.invalid: stop ends the run: set it to drop (the rows) or impute (the training mean)"
                + (", or list a column of categories in data.categorical" if features else ""))
    if choice == "drop":
        return "their rows are dropped (quality.invalid: drop)"
    outcome = "filled with the training mean (quality.invalid: impute)" if features else ""
    return "; ".join(x for x in (outcome, "rows with such a label are dropped" if labels else "") if x)


def _unreadable(splits: Splits, quality: QualityConfig) -> tuple[Rule, dict[str, pd.Series]]:
    keys: dict[str, pd.Series] = {}
    found: list[tuple[str, pd.Series]] = []
    first_error = ""
    # Threads: reading files is I/O and PIL releases the GIL while decoding headers.
    with ThreadPoolExecutor(max_workers=8) as pool:
        for split, frame in list(splits.frames.items()):
            results = list(pool.map(image_fingerprint, frame["image"], chunksize=64))
            bad = np.array([err is not None for _, err in results], dtype=bool)
            if bad.any():
                at = int(np.flatnonzero(bad)[0])
                if not first_error:
                    value = frame["image"].iloc[at]
                    shown = display_path(value) if isinstance(value, str) else type(value).__name__
                    first_error = f"{split}:{int(frame['_row'].iloc[at])} {shown}: {results[at][1]}"
                found.append((split, frame.loc[bad, "_row"].tolist()))
                splits.drop(split, bad, "unreadable image")
            keys[split] = pd.Series([h for h, err in results if err is None], dtype="str")
    count = sum(len(rows) for _, rows in found)
    message = (f"{_n(count, 'image')} cannot be read (dropped from training); first: {first_error}" if count
               else "every image opens")
    return Rule("unreadable", count <= quality.max_unreadable, count, quality.max_unreadable, count,
                _examples(found), message), keys


def _groups_apart(splits: Splits) -> Rule:
    """No group (data.split.group: a speaker, a patient) in both train and a held-out split."""
    train = set(splits.frames["train"]["_group"]) if "_group" in splits.frames.get("train", ()) else set()
    found, shared = [], set()
    for split in ("validation", "test"):
        frame = splits.frames.get(split)
        if frame is not None and "_group" in frame:
            crossing = frame["_group"].isin(train).to_numpy()
            if crossing.any():
                found.append((split, frame.loc[crossing, "_row"].tolist()))
                shared |= set(frame.loc[crossing, "_group"])
    count = sum(len(rows) for _, rows in found)
    message = (f"{_n(len(shared), 'group')} of data.split.group also in train: {', '.join(sorted(shared)[:_EXAMPLES])} "
               f"({_n(count, 'held-out row')})" if shared else "no group is in both train and a held-out split")
    return Rule("group_leakage", not shared, len(shared), 0, count, _examples(found), message)


def _tidy_labels(splits: Splits, classification: bool) -> None:
    for frame in splits.frames.values():
        label = frame.get("label")
        if label is None or not len(label):
            continue
        if classification and label.dtype == object and len({isinstance(v, str) for v in label}) > 1:
            frame["label"] = label.map(str)  # JSON's 1 and "1" are one class
        elif pd.api.types.is_float_dtype(label) and _whole(label.to_numpy()):
            # A label column with a blank cell reads as float (1.0); once the blank row is gone, say 1 again.
            frame["label"] = label.astype("int64")


def _whole(values: np.ndarray) -> bool:
    with np.errstate(invalid="ignore"):
        return bool(np.all(np.abs(values) < 2**53) and np.all(np.mod(values, 1) == 0))


def _label_counts(labels: pd.Series) -> dict[str, int]:
    counts = {str(k): int(v) for k, v in labels.value_counts(sort=False).items()}
    return dict(sorted(counts.items(), key=lambda kv: natural_order(kv[0])))


def _input_keys(frame: pd.DataFrame, features: list[str], image_keys: pd.Series | None) -> pd.Series:
    """One uint64 per row for what the model sees; equal inputs give equal keys across splits."""
    parts = {}
    if "text" in frame:
        text = frame["text"]
        if not isinstance(text.dtype, pd.StringDtype):
            text = text.map(str).astype("str")
        parts["text"] = text.str.replace(r"\s+", " ", regex=True).str.strip()  # spacing is not content
    if image_keys is not None:  # an image's or a clip's fingerprint
        parts["image"] = image_keys.to_numpy()
    elif "image" in frame:
        parts["image"] = frame["image"].map(lambda v: image_fingerprint(v)[0]).astype("str")
    for column in features:
        values = frame[column]
        # 3 and 3.0 are the same input; one split may hold a blank that made its column float.
        parts[column] = values.astype("float64") if pd.api.types.is_numeric_dtype(values) else values.astype("str")
    if not parts:
        return pd.Series(np.arange(len(frame)), dtype="uint64")
    keys = pd.DataFrame({k: (v.to_numpy() if hasattr(v, "to_numpy") else v) for k, v in parts.items()})
    return pd.Series(pd.util.hash_pandas_object(keys, index=False).to_numpy())


def _duplicates(splits: Splits, inputs: dict[str, pd.Series], quality: QualityConfig) -> Rule:
    worst, count, found, conflicts = 0.0, 0, [], 0
    for split, frame in splits.frames.items():
        keys = inputs[split]
        if "label" in frame:
            labels = pd.util.hash_pandas_object(frame["label"].astype("str"), index=False).to_numpy()
            rows = pd.DataFrame({"input": keys.to_numpy(), "label": labels})
            conflicts += int((rows.groupby("input")["label"].nunique() > 1).sum())
        else:
            rows = pd.DataFrame({"input": keys.to_numpy()})
        dup = rows.duplicated().to_numpy()
        if dup.any():
            found.append((split, frame.loc[dup, "_row"].tolist()))
            count += int(dup.sum())
            worst = max(worst, float(dup.mean()))
    message = (f"{_n(count, 'row')} {_v(count, 'repeats', 'repeat')} an earlier row of their split "
               f"(worst split {worst:.2%})" if count else "no duplicate rows")
    if conflicts:
        message += f"; {_n(conflicts, 'input')} {_v(conflicts, 'appears', 'appear')} with more than one label"
    return Rule("duplicates", worst <= quality.max_duplicates, worst, quality.max_duplicates, count,
                _examples(found), message)


def _leakage(splits: Splits, inputs: dict[str, pd.Series], quality: QualityConfig) -> Rule:
    seen = inputs["train"].to_numpy()
    total, found, first = 0, [], ""
    for split in ("validation", "test"):
        if split in inputs:
            leaked = np.isin(inputs[split].to_numpy(), seen)
            total += len(leaked)
            if leaked.any():
                found.append((split, splits.frames[split].loc[leaked, "_row"].tolist()))
                if not first:  # naming the twin makes the overlap checkable by eye
                    key = inputs[split].to_numpy()[np.flatnonzero(leaked)[0]]
                    twin = splits.frames["train"]["_row"].to_numpy()[np.flatnonzero(seen == key)[0]]
                    first = f"; first: {split}:{found[-1][1][0]} is the same as train:{int(twin)}"
    count = sum(len(rows) for _, rows in found)
    share = count / total if total else 0.0
    message = (f"{_n(count, 'validation/test row')} ({share:.2%}) {_v(count)} an input that is also in train{first}"
               if count else "no validation/test input appears in train")
    return Rule("leakage", share <= quality.max_leakage, share, quality.max_leakage, count, _examples(found), message)


def _class_rules(train: dict[str, int], quality: QualityConfig) -> list[Rule]:
    counts = {k: v for k, v in train.items() if v > 0}
    n = len(counts)
    rules = [Rule("classes", n >= 2, n, 2, n, [],
                  f"train has {n} class{'es' * (n != 1)}" + ("" if n >= 2 else "; a classifier needs at least 2"),
                  fatal=True)]
    if n:
        big, small = max(counts, key=counts.get), min(counts, key=counts.get)
        ratio = counts[big] / counts[small]
        message = (f"every class has {counts[big]:,} train rows" if ratio == 1 else
                   f"largest class '{big}' has {counts[big]:,} train rows, smallest '{small}' {counts[small]:,}"
                   f" (ratio {ratio:.1f})")
        rules.append(Rule("imbalance", ratio <= quality.max_imbalance, round(ratio, 3), quality.max_imbalance, n, [],
                          message))
    rare = sorted((k for k, v in counts.items() if v < quality.min_class_count), key=counts.get)
    message = (f"{_n(len(rare), 'class', 'classes')} {_v(len(rare))} fewer than {quality.min_class_count} train rows: "
               + ", ".join(f"'{k}' ({counts[k]})" for k in rare[:_EXAMPLES]) if rare
               else f"every class has at least {quality.min_class_count} train rows")
    rules.append(Rule("min_class_count", not rare, min(counts.values()) if counts else 0, quality.min_class_count,
                      len(rare), [], message))
    return rules


def _length_stats(text: pd.Series) -> dict[str, dict[str, float]]:
    """Characters always; whitespace words only where the texts are written with spaces between words
    (every Chinese line would be "1 word")."""
    text = text.astype("str")
    units = {"chars": text.str.len()}
    if _spaced(text):
        units["words"] = text.str.count(r"\S+")
    out = {}
    for unit, values in units.items():
        v = values.to_numpy(dtype=float)
        if len(v):
            out[unit] = {"min": float(v.min()), "mean": round(float(v.mean()), 2),
                         "p95": float(np.percentile(v, 95)), "max": float(v.max())}
    return out


def _spaced(text: pd.Series, sample: int = 5_000) -> bool:
    """Whether most characters are in scripts that put spaces between words; a sample decides."""
    head = text.head(sample)
    letters = int(head.str.len().sum() - head.str.count(r"\s").sum())
    return letters > 0 and int(head.str.count(_UNSPACED).sum()) * 2 < letters


def _text_length(splits: Splits, limit: int) -> Rule:
    found = []
    for split, frame in splits.frames.items():
        if "text" in frame:
            long = frame["text"].astype("str").str.len().to_numpy() > limit
            if long.any():
                found.append((split, frame.loc[long, "_row"].tolist()))
    count = sum(len(rows) for _, rows in found)
    message = (f"{_n(count, 'text')} {_v(count, 'is', 'are')} longer than {limit:,} characters" if count
               else f"no text over {limit:,} characters")
    return Rule("text_length", count == 0, count, limit, count, _examples(found), message)
