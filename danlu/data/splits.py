"""From a recipe's `data:` section to train/validation/test frames with role-named columns."""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from danlu.data.config import SPLIT_NAMES, DataConfig
from danlu.data.images import SPLIT_FOLDERS
from danlu.data.paths import display_path
from danlu.data.sources import read_source
from danlu.data.values import CONTAINERS, mostly_numbers, spelled_missing
from danlu.errors import DataError

META = ("_row", "_source", "_group")  # _group: data.split.group's column, kept for the split and the gate
INPUT_ROLES = ("text", "image", "audio", "video")


@dataclass
class Splits:
    """frames: split -> frame with role columns (text/label/image), feature columns, _row, _source.
    features: the feature columns; those not in categorical are numbers (a stray text cell in one
    is the quality gate's to count and turn into a number or a gap).
    dropped: split -> reason -> source row numbers removed (by the quality gate)."""

    frames: dict[str, pd.DataFrame]
    features: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    dropped: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sampled_from: dict[str, int] = field(default_factory=dict)  # split -> rows a data.limit sample was drawn from

    def sizes(self) -> dict[str, int]:
        return {name: len(frame) for name, frame in self.frames.items()}

    def drop(self, split: str, mask: np.ndarray, reason: str) -> None:
        """Remove the rows where `mask` is true, remembering their row numbers and why."""
        frame = self.frames[split]
        if not mask.any():
            return
        rows = [int(r) for r in frame.loc[mask, "_row"]]
        self.dropped.setdefault(split, {}).setdefault(reason, []).extend(rows)
        self.frames[split] = frame.loc[~mask].reset_index(drop=True)


def load_splits(data: DataConfig, roles: list[str], recipe_dir: Path | None,
                seed: int | None = None, classification: bool = True) -> Splits:
    seed = data.split.seed if seed is None else seed
    frames, notes = _read_all(data, recipe_dir)
    every_column = sorted({str(c) for f in frames.values() for c in f.columns if not str(c).startswith("_")})
    frames = {name: map_columns(frame, data, roles, every_column=every_column) for name, frame in frames.items()}
    if data.split.group:
        frames = {name: _with_group(frame, data.split.group, every_column) for name, frame in frames.items()}
    features, categorical = _feature_columns(frames, data, roles)
    keep = [*dict.fromkeys([r for r in roles] + features), *META]
    frames = {name: frame[[c for c in keep if c in frame.columns]] for name, frame in frames.items()}
    for frame in frames.values():
        check_cells(frame, roles, features)
    stratify = classification and data.split.stratify and "label" in roles
    frames, more = _carve(frames, data, seed, stratify)
    notes += more
    sampled_from: dict[str, int] = {}
    for name, cap in (data.limit or {}).items():
        if name in frames and len(frames[name]) > cap:
            sampled_from[name] = len(frames[name])
            frames[name], note = _sample(frames[name], cap, seed, stratify)
            notes.append(f"{name}: {cap:,} rows sampled from {sampled_from[name]:,} (data.limit.{name}, seed {seed})")
            notes += [f"{name}: {note}"] if note else []
    ordered = {name: frames[name].reset_index(drop=True) for name in SPLIT_NAMES if name in frames}
    return Splits(ordered, features, categorical, notes=notes, sampled_from=sampled_from)


def load_frame(path_or_source: str | dict, data: DataConfig, roles: list[str], recipe_dir: Path | None,
               allow_missing: bool | Iterable[str] = False, split: str = "test") -> pd.DataFrame:
    """One file read and mapped like the recipe's data (for `danlu eval --data` and predict).
    allow_missing: True, or the roles that may be absent (predict has no labels)."""
    got = read_source(path_or_source, data, recipe_dir)
    if isinstance(got, dict):
        if split not in got and len(got) != 1:
            raise DataError(f"{path_or_source} holds splits {', '.join(got)}; none is '{split}'")
        got = got.get(split, next(iter(got.values())))
    optional = set(roles) if allow_missing is True else set(allow_missing or ())
    frame = map_columns(got, data, roles, optional=optional)
    features, _ = _feature_columns({"data": frame}, data, roles)
    keep = [*dict.fromkeys(list(roles) + features), *META]
    frame = frame[[c for c in keep if c in frame.columns]].reset_index(drop=True)
    check_cells(frame, roles, features)
    return frame


def check_cells(frame: pd.DataFrame, roles: Iterable[str], features: list[str]) -> None:
    """A label or a feature is one value, a text is text: a JSON array or object there has no
    meaning to a model (a text's list of lines is joined before this)."""
    for column in dict.fromkeys([*roles, *features]):
        if column in ("image", "audio", "objects") or column not in frame or frame[column].dtype != object:
            continue
        kinds = (dict, set) if column == "text" else CONTAINERS
        bad = frame[column].map(lambda v: isinstance(v, kinds)).to_numpy(dtype=bool)
        count = int(bad.sum())
        if count:
            at = int(np.flatnonzero(bad)[0])
            what = f"feature '{column}'" if column in features and column not in roles else f"the {column}"
            kind = type(frame[column].iloc[at]).__name__
            raise DataError(f"{_name(frame)} line {int(frame['_row'].iloc[at])}: {what} is a {kind}, not a single "
                            f"value ({count:,} row{'s' * (count != 1)} like it); give one string or number per cell")


def kfold_indices(labels, k: int, seed: int, stratify: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_indices, validation_indices) for each of k folds; stratified by label when it can be."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(labels)
    if not 2 <= k <= n:
        raise DataError(f"k-fold needs 2 <= k <= number of rows ({n}), got k={k}")
    y = pd.Series(list(labels)).astype(str).to_numpy()
    if stratify and pd.Series(y).value_counts().max() >= k:
        with warnings.catch_warnings():  # a class smaller than k is fine: it just misses some folds
            warnings.simplefilter("ignore", UserWarning)
            folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n), y)
            return [(tr, va) for tr, va in folds]
    return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n)))


def map_columns(frame: pd.DataFrame, data: DataConfig, roles: Iterable[str], optional: Iterable[str] = (),
                every_column: list[str] | None = None) -> pd.DataFrame:
    renames: dict[str, str] = {}
    for role in roles:
        candidates = data.role_columns(role)
        found = next((c for c in candidates if c in frame.columns), None)
        if found is None:
            if role in set(optional):
                continue
            raise DataError(_missing_column(frame, role, candidates, every_column or []))
        if found in renames:
            raise DataError(f"column '{found}' is mapped to two roles: {renames[found]} and {role}")
        renames[found] = role
    # A column that already bears a role's name but is not that role would collide on rename.
    clashes = [role for role in renames.values() if role in frame.columns and role not in renames]
    return _join_lists(frame.drop(columns=clashes).rename(columns=renames))


def _join_lists(frame: pd.DataFrame) -> pd.DataFrame:
    """A text field holding a list of strings (a poem's `paragraphs`) becomes one text, a line per item."""
    text = frame.get("text")
    if text is None or text.dtype != object:
        return frame
    lists = text.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).to_numpy(dtype=bool)
    if lists.any():
        frame = frame.copy()
        frame.loc[lists, "text"] = text[lists].map(lambda v: "\n".join(str(x) for x in v))
    return frame


def _missing_column(frame: pd.DataFrame, role: str, candidates: list[str], every_column: list[str]) -> str:
    columns = [str(c) for c in frame.columns if not str(c).startswith("_")]
    wanted = " or ".join(f"'{c}'" for c in candidates)
    hint = ""
    for pool in (columns, every_column):  # another file's column is often what was meant
        close = [m for c in candidates for m in difflib.get_close_matches(c, pool, n=1, cutoff=0.6)]
        if close:
            hint = f"; did you mean '{close[0]}'?"
            break
    hint = hint or f"; set data.columns.{role} to the column that holds it"
    return (f"{_name(frame)}: no column {wanted} for role {role}; "
            f"columns are: {', '.join(columns)}{hint}")


def _name(frame: pd.DataFrame) -> str:
    return display_path(frame["_source"].iloc[0]) if "_source" in frame and len(frame) else "data"


def _read_all(data: DataConfig, recipe_dir: Path | None) -> tuple[dict[str, pd.DataFrame], list[str]]:
    explicit = data.explicit_splits()
    pool_source = explicit.pop("train", None) or data.source
    if pool_source is None:
        raise DataError("no training data: set data.source (split automatically) or data.train")
    frames: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    got = read_source(pool_source, data, recipe_dir)
    if isinstance(got, dict):
        if "train" not in got:
            raise DataError(f"{pool_source} holds splits {', '.join(got)} but no train split")
        frames.update(got)
    elif data.split_column:
        frames.update(_by_split_column(got, data.split_column))
    else:
        frames["train"] = got
    for name, source in explicit.items():
        if name in frames:
            notes.append(f"{name}: taken from data.{name}, not from the pool's own {name} rows")
        one = read_source(source, data, recipe_dir)
        if isinstance(one, dict):
            if name not in one:
                raise DataError(f"data.{name}: {source} holds splits {', '.join(one)}; none is {name}")
            one = one[name]
        frames[name] = one
    return frames, notes


def _with_group(frame: pd.DataFrame, column: str, every_column: list[str]) -> pd.DataFrame:
    if column not in frame.columns:
        close = difflib.get_close_matches(column, every_column, n=1)
        raise DataError(f"{_name(frame)}: no column '{column}' (data.split.group); columns are: "
                        f"{', '.join(every_column)}" + (f"; did you mean '{close[0]}'?" if close else ""))
    missing = frame[column].isna()
    if missing.any():
        raise DataError(f"{_name(frame)} line {int(frame.loc[missing, '_row'].iloc[0])}: no {column} (data.split.group); "
                        f"every row needs its group")
    return frame.assign(_group=frame[column].astype(str))


def _by_split_column(frame: pd.DataFrame, column: str) -> dict[str, pd.DataFrame]:
    if column not in frame.columns:
        columns = [str(c) for c in frame.columns if not str(c).startswith("_")]
        close = difflib.get_close_matches(column, columns, n=1)
        raise DataError(f"{_name(frame)}: no column '{column}' (data.split_column); columns are: "
                        f"{', '.join(columns)}" + (f"; did you mean '{close[0]}'?" if close else ""))
    names = frame[column].astype(str).str.strip().str.lower().map(SPLIT_FOLDERS)
    unknown = names.isna()
    if unknown.any():
        rows = frame.loc[unknown, "_row"].head(5).tolist()
        values = sorted(frame.loc[unknown, column].astype(str).unique())[:5]
        raise DataError(f"{_name(frame)}: {int(unknown.sum())} rows have a {column} value that is not a split "
                        f"({', '.join(values)}), e.g. line {', '.join(map(str, rows))}; "
                        "use train, validation (val, dev) or test")
    out = {name: frame.loc[names == name].drop(columns=[column]) for name in SPLIT_NAMES}
    if out["train"].empty:
        raise DataError(f"{_name(frame)}: no row has {column} = train")
    return {name: part for name, part in out.items() if not part.empty}


def _feature_columns(frames: dict[str, pd.DataFrame], data: DataConfig, roles: list[str]
                     ) -> tuple[list[str], list[str]]:
    first = next(iter(frames.values()))
    if data.features is not None:
        features = list(data.features)
    elif any(role in INPUT_ROLES for role in roles):
        features = []  # text and image tasks have their input; the rest of the columns is noise
    else:
        features = [str(c) for c in first.columns
                    if not str(c).startswith("_") and c not in roles and c != data.split_column]
    for frame in frames.values():  # a test file without a training column must not slip through
        columns = [str(c) for c in frame.columns if not str(c).startswith("_")]
        for name in features:
            if name not in frame.columns:
                close = difflib.get_close_matches(name, columns, n=1)
                where = "data.features" if data.features is not None else "a feature of the training data"
                raise DataError(f"{_name(frame)}: no feature column '{name}' ({where}); columns are: "
                                f"{', '.join(columns)}" + (f"; did you mean '{close[0]}'?" if close else ""))
    if data.categorical is not None:
        unknown = [c for c in data.categorical if c not in features]
        if unknown:
            close = difflib.get_close_matches(unknown[0], features, n=1)
            raise DataError(f"data.categorical: '{unknown[0]}' is not a feature column; features are: "
                            f"{', '.join(features)}" + (f"; did you mean '{close[0]}'?" if close else ""))
        categorical = list(data.categorical)
    else:
        categorical = [c for c in features if not _numeric(first[c])]
    return features, categorical


def _numeric(values: pd.Series) -> bool:
    # One `?` among numbers must not make a column of categories: the gate reports that cell instead.
    if pd.api.types.is_numeric_dtype(values):
        return True
    return (values.dtype == object or isinstance(values.dtype, pd.StringDtype)) and mostly_numbers(values)


def _size(value: float | int, n: int) -> int:
    # ceil like scikit-learn: 10% of 5 rows is one validation row, not none.
    return math.ceil(value * n) if isinstance(value, float) else int(value)


def split_sizes(split, present, n: int) -> dict[str, int]:
    """Validation and test counts to take from a training pool of `n` where `present` has no such split."""
    return {name: 0 if name in present else _size(getattr(split, name), n) for name in ("validation", "test")}


def take_rows(frame: pd.DataFrame, index) -> pd.DataFrame:
    return frame.iloc[index].reset_index(drop=True)


def carve_pool(pools: dict, split, unit: str, take) -> tuple[dict, list[str]]:
    """Validation and test units (sentences, pairs, conversations) taken from the training pool where
    the recipe gives none of their own, without stratifying: a share (ceil) or a count, drawn with the
    split's seed, or in file order the last ones (test last, validation just before it).
    `take(pool, sorted_indices)` makes a split of the pool's kind."""
    pool = pools["train"]
    n = len(pool)
    sizes = split_sizes(split, pools, n)
    if not sum(sizes.values()):
        return dict(pools), []
    if sum(sizes.values()) >= n:
        raise DataError(f"split: validation ({sizes['validation']}) + test ({sizes['test']}) {unit} would take all "
                        f"{n} training {unit}; lower data.split.validation / data.split.test")
    order = np.random.default_rng(split.seed).permutation(n) if split.shuffle else np.arange(n)
    cut = n - sizes["validation"] - sizes["test"]
    parts = {"train": order[:cut], "validation": order[cut:cut + sizes["validation"]],
             "test": order[cut + sizes["validation"]:]}
    out = dict(pools)
    for name, index in parts.items():
        if name == "train" or sizes.get(name):
            out[name] = take(pool, np.sort(index))
    taken = ", ".join(f"{name} {sizes[name]:,}" for name in sizes if sizes[name])
    how = f"shuffled, seed {split.seed}" if split.shuffle else "in file order"
    return out, [f"{taken} {unit} taken from the {n:,} training {unit} ({how})"]


def _carve(frames: dict[str, pd.DataFrame], data: DataConfig, seed: int, stratify: bool
           ) -> tuple[dict[str, pd.DataFrame], list[str]]:
    pool = frames["train"].reset_index(drop=True)
    n = len(pool)
    if n == 1 and "text" in pool and "label" not in pool:
        return _carve_text(frames, data)
    n_test = 0 if "test" in frames else _size(data.split.test, n)
    n_val = 0 if "validation" in frames else _size(data.split.validation, n)
    if n_test + n_val == 0:
        return frames, []
    if n_test + n_val >= n:
        raise DataError(f"split: validation ({n_val}) + test ({n_test}) rows would take all {n} rows of "
                        f"{_name(pool)}, leaving none to train on; lower data.split.validation / data.split.test")
    notes: list[str] = []
    if data.split.group:
        parts, notes = _carve_groups(pool, n_test, n_val, data)
    elif not data.split.shuffle:
        order = np.arange(n)  # file order: test from the end, validation just before it
        parts = {"train": order[:n - n_test - n_val], "validation": order[n - n_test - n_val:n - n_test],
                 "test": order[n - n_test:]}
    else:
        rest, test, note = _take(np.arange(n), pool, n_test, seed, stratify)
        train, val, note2 = _take(rest, pool, n_val, seed, stratify)
        notes += [x for x in (note, note2) if x]
        parts = {"train": train, "validation": val, "test": test}
    out = dict(frames)
    for name, index in parts.items():
        if name == "train" or (name not in frames and len(index)):
            out[name] = pool.iloc[np.sort(index)].reset_index(drop=True)
    return out, notes


def _carve_groups(pool: pd.DataFrame, n_test: int, n_val: int, data: DataConfig
                  ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Whole groups to test and validation: a share is of the groups, a count is a number of groups."""
    groups = np.asarray(sorted(pool["_group"].unique()))
    count = len(groups)

    def size(value, taken: int) -> int:
        return 0 if taken == 0 else (math.ceil(value * count) if isinstance(value, float) else int(value))

    g_test, g_val = size(data.split.test, n_test), size(data.split.validation, n_val)
    if g_test + g_val >= count:
        raise DataError(f"split: validation ({g_val}) + test ({g_test}) groups of {data.split.group} would take all "
                        f"{count} groups, leaving none to train on; lower data.split.validation / data.split.test")
    order = np.random.default_rng(data.split.seed).permutation(groups) if data.split.shuffle else groups
    chosen = {"test": order[count - g_test:], "validation": order[count - g_test - g_val:count - g_test]}
    member = pool["_group"].to_numpy()
    parts = {name: np.flatnonzero(np.isin(member, chosen[name])) for name in chosen}
    parts["train"] = np.flatnonzero(~np.isin(member, np.concatenate(list(chosen.values()))))
    notes = [f"{name}: the {data.split.group} {', '.join(map(str, sorted(chosen[name])))} "
             f"({len(parts[name]):,} rows), whole groups" for name in ("validation", "test") if len(chosen[name])]
    return parts, notes


def _carve_text(frames: dict[str, pd.DataFrame], data: DataConfig) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """One document (a txt corpus) is cut by characters, like nanoGPT: test is the last share of
    the text, validation the share just before it; a fraction is of the characters, an integer a count."""
    pool = frames["train"].reset_index(drop=True)
    text = str(pool["text"].iloc[0])
    n = len(text)
    n_test = 0 if "test" in frames else _size(data.split.test, n)
    n_val = 0 if "validation" in frames else _size(data.split.validation, n)
    if n_test + n_val >= n:
        raise DataError(f"split: validation ({n_val:,}) + test ({n_test:,}) characters would take all {n:,} "
                        f"characters of {_name(pool)}; lower data.split.validation / data.split.test")
    cuts = {"train": (0, n - n_test - n_val), "validation": (n - n_test - n_val, n - n_test), "test": (n - n_test, n)}
    out = dict(frames)
    for name, (start, end) in cuts.items():
        if name == "train" or (name not in frames and end > start):
            out[name] = pool.assign(text=text[start:end])
    note = f"one document of {n:,} characters, cut by characters: " + ", ".join(
        f"{name} {end - start:,}" for name, (start, end) in cuts.items() if name in out and end > start)
    return out, [note]


def _take(index: np.ndarray, pool: pd.DataFrame, count: int, seed: int, stratify: bool
          ) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Split `index` into (kept, taken) with `count` rows taken, stratified by label if asked."""
    from sklearn.model_selection import train_test_split

    if count == 0:
        return index, index[:0], None
    labels = _strata(pool["label"].iloc[index]) if stratify else None
    try:
        kept, taken = train_test_split(index, test_size=count, random_state=seed, stratify=labels)
        return kept, taken, None
    except ValueError:
        if labels is None:
            raise
        kept, taken = train_test_split(index, test_size=count, random_state=seed)
        return kept, taken, (f"split of {count} rows not stratified: some class has too few rows "
                             "to appear on both sides")


def _strata(labels: pd.Series) -> np.ndarray:
    """Stratification keys. A row without a label (the gate drops it) goes with the largest class:
    one gap must not be a class of one that makes the whole split give up stratifying."""
    keys = labels.astype(str).to_numpy(dtype=object)
    gaps = labels.isna().to_numpy() | spelled_missing(labels)
    if gaps.any() and not gaps.all():
        keys[gaps] = pd.Series(keys[~gaps]).mode().iloc[0]
    return keys


def _sample(frame: pd.DataFrame, cap: int, seed: int, stratify: bool) -> tuple[pd.DataFrame, str | None]:
    index = np.arange(len(frame))
    _, taken, note = _take(index, frame, cap, seed, stratify and "label" in frame)
    return frame.iloc[np.sort(taken)], note and "limit sample not stratified: a class is too small"
