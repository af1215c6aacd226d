"""The `data:` and `quality:` sections of a recipe.

extra="forbid" everywhere: a misspelt key (`colums:`) must be an error the recipe loader can
point at, not a silently ignored setting.
"""

from __future__ import annotations

import difflib
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from danlu.data.pii import KINDS as PII_KINDS
from danlu.data.pii import unknown_kind

SPLIT_NAMES = ("train", "validation", "test")
Format = Literal["auto", "csv", "tsv", "jsonl", "json", "parquet", "txt",
                 "imagefolder", "image_csv", "audiofolder", "idx", "builtin", "hub", "coco", "yolo"]
FORMATS: tuple[str, ...] = get_args(Format)

# A path, a glob ("poems/*.json"), or a list of them (read in order and stacked), builtin:/hub:
# names, or {images, labels} for MNIST idx files.
Source = str | list[str] | dict | None


def _check_size(value: float | int, what: str) -> float | int:
    # bool is an int to Python; `test: true` is a typo, not a count of one.
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a fraction (0.2) or a row count (2000), not {value}")
    if isinstance(value, float) and not 0.0 <= value < 1.0:
        raise ValueError(f"{what} as a fraction must be in [0, 1), got {value}; use an integer for a row count")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return value


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # float = share of all rows of the pool, int = number of rows; only used for splits the
    # recipe does not give explicitly. Validation is carved out of train.
    validation: float | int = 0.1
    test: float | int = 0.2
    seed: int = 42
    # keep each class's share the same in every split (classification only)
    stratify: bool = True
    # False: no shuffling; test = the last rows in file order, validation the rows just before
    # (e.g. MNIST: first 8,000 train, last 2,000 test)
    shuffle: bool = True
    # a column whose rows must stay together (the speaker, the patient): validation and test take whole
    # groups, a share or a count of groups, so none is on both sides; with given splits (split_column) the
    # gate checks that no group crosses them
    group: str | None = Field(default=None, min_length=1)

    @field_validator("validation", "test")
    @classmethod
    def _size(cls, value, info):
        return _check_size(value, info.field_name)


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # one pool that is split into train/validation/test: a file, an image folder, a csv of image
    # paths, builtin:NAME, hub:NAME, or {images: ..., labels: ...} for MNIST idx files
    source: Source = None
    # per-split sources (same forms); a given split is used as is and never re-split
    train: Source = None
    validation: Source = None
    test: Source = None
    # auto = by extension (.csv .tsv .jsonl .json .parquet .txt, also .gz), folder, or prefix
    format: Format = "auto"
    # .txt files: one example per line, or the whole file as one text (language modelling, where
    # the default is file)
    txt: Literal["lines", "file"] = "lines"
    # the first line holds the column names; defaults to false when column_names is given
    header: bool = True
    column_names: list[str] | None = None
    # None = "," for csv and "\t" for tsv
    delimiter: str | None = None
    # role (text, label, image) -> column in the files; a list means the first that exists.
    # A text field that holds a list of strings (a poem's lines) is joined with newlines.
    columns: dict[str, str | list[str]] = Field(default_factory=dict)
    # tabular feature columns; None = every column that is not a role
    features: list[str] | None = None
    # categorical feature columns; None = the non-numeric feature columns
    categorical: list[str] | None = None
    # a column whose values (train / validation / test, also val, dev) already say the split
    split_column: str | None = None
    split: SplitConfig = Field(default_factory=SplitConfig)
    # at most this many rows per split (a seeded, class-balanced sample), for quick runs
    limit: dict[str, int] | None = None
    # extra arguments for datasets.load_dataset (name, revision, data_dir, ...); the key
    # `splits` maps danlu's split names to the hub's, e.g. {validation: dev}
    hub: dict | None = None

    @field_validator("source", "train", "validation", "test")
    @classmethod
    def _source(cls, value):
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"images", "labels"})
            if unknown or "images" not in value:
                raise ValueError(
                    "a mapping source is for MNIST idx files and takes `images:` (and `labels:`) "
                    f"paths; got keys {sorted(value)}")
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        if isinstance(value, list) and (not value or not all(isinstance(v, str) and v.strip() for v in value)):
            raise ValueError("a list source needs at least one path, and every item is a path")
        return value

    @field_validator("columns")
    @classmethod
    def _columns(cls, value):
        for role, names in value.items():
            if isinstance(names, list) and not names:
                raise ValueError(f"columns.{role}: give at least one column name")
        return value

    @field_validator("limit")
    @classmethod
    def _limit(cls, value):
        for name, count in (value or {}).items():
            if name not in SPLIT_NAMES:
                close = difflib.get_close_matches(name, SPLIT_NAMES, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ValueError(f"limit: unknown split '{name}' (splits: {', '.join(SPLIT_NAMES)}){hint}")
            if count < 1:
                raise ValueError(f"limit.{name} must be at least 1, got {count}")
        return value

    @model_validator(mode="after")
    def _one_pool(self):
        if self.source is not None and self.train is not None:
            raise ValueError("give either `source` (one pool, split automatically) or `train` "
                             "(with optional `validation`/`test`), not both")
        return self

    @model_validator(mode="after")
    def _header_follows_column_names(self):
        # Giving column_names almost always means the file has no header (german_credit);
        # silently eating the first data row as a header would be worse than this default.
        if self.column_names and "header" not in self.model_fields_set:
            self.header = False
        return self

    def not_default(self, keys) -> list[str]:
        """Those of `keys` whose value is not the default. Compared with the default, not looked up in the
        keys written: a run's resolved recipe writes them all."""
        fields = type(self).model_fields
        return [key for key in keys if getattr(self, key) != fields[key].get_default(call_default_factory=True)]

    def explicit_splits(self) -> dict[str, Source]:
        return {name: getattr(self, name) for name in SPLIT_NAMES if getattr(self, name) is not None}

    def role_columns(self, role: str) -> list[str]:
        """Column names that may hold `role`, in order of preference."""
        names = self.columns.get(role, role)
        return [names] if isinstance(names, str) else list(names)


class PiiConfig(BaseModel):
    """quality.pii: personal data in the text columns (danlu.data.pii has the recognizers and their checks)."""

    model_config = ConfigDict(extra="forbid")
    # warn: counted and reported (rows shown masked); mask: each match becomes [KIND] before anything is
    # fitted, the tokenizer included; drop: rows with a match leave every split
    action: Literal["warn", "mask", "drop"] = "warn"
    kinds: list[str] = Field(default_factory=lambda: list(PII_KINDS), min_length=1)
    # the columns searched; None: the text role and every categorical (string) feature
    columns: list[str] | None = Field(None, min_length=1)

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value):
        for kind in value:
            problem = unknown_kind(kind)
            if problem:
                raise ValueError(problem)
        return value


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # stop: a failing rule stops the run before training; warn: it is reported and training goes on,
    # except where nothing could train: a classifier with fewer than 2 classes in train, no
    # training rows left, invalid values with `invalid: stop`
    on_fail: Literal["stop", "warn"] = "stop"
    # share of rows with an empty required field (text, label, image, feature) above which the
    # rule fails; such rows are dropped from training either way. A label or feature written as
    # NaN, null, None, N/A or NA (any case) is empty too, never a class or a category.
    max_missing: float = Field(0.0, ge=0.0, le=1.0)
    # a cell of a numeric feature that is no finite number (`?`, `abc`, inf, 1e300), or a
    # regression label that is none: stop = the run stops, whatever on_fail says; drop = the rows
    # are dropped; impute = the cells become gaps the tabular preprocessing fills with the
    # training mean (a row with such a label is dropped: a label cannot be imputed)
    invalid: Literal["stop", "drop", "impute"] = "stop"
    # a feature column that alone predicts the label at least this well (cross-validated accuracy, or R²
    # for regression, of a shallow tree on that column in train) fails the `label_leak` rule
    max_feature_agreement: float = Field(0.99, gt=0.0, le=1.0)
    # share of exact duplicate rows (same input and label) allowed within one split
    max_duplicates: float = Field(0.1, ge=0.0, le=1.0)
    # share of validation/test rows whose input also appears in train; any overlap inflates scores
    max_leakage: float = Field(0.0, ge=0.0, le=1.0)
    # largest class count / smallest class count in train
    max_imbalance: float = Field(20.0, ge=1.0)
    # every class needs at least this many training examples
    min_class_count: int = Field(2, ge=0)
    # images that are missing or cannot be decoded; they are dropped either way
    max_unreadable: int = Field(0, ge=0)
    # audio: clips whose loudest 50 ms stays below -50 dBFS, as a share of a split, before the rule fails
    max_silent: float = Field(0.0, ge=0.0, le=1.0)
    # audio: clips shorter / longer than this many seconds fail the `duration` rule; None: reported only
    min_seconds: float | None = Field(None, ge=0.0)
    max_seconds: float | None = Field(None, gt=0.0)
    # fail when a text is longer than this many characters; None = report lengths only
    max_text_length: int | None = Field(None, ge=1)
    # personal data in the text (emails, phones, cards, IPs, resident IDs, IBANs): None = not searched
    pii: PiiConfig | None = None
