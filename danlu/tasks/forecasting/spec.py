"""The forecasting task as the registry knows it, with its own recipe section `forecast:`.

Light on purpose (pydantic only): the recipe is validated with it before pandas or torch load.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import Field, StrictFloat, StrictInt, field_validator, model_validator

from danlu.recipe.sections import MAX_COUNT, Section
from danlu.registry import Capabilities, TaskSpec

METRICS = ("mse", "mae", "mse_original", "mae_original", "mase")
ARCHS = ("dlinear", "patchtst", "lstm")
MAX_STEPS_OF_TIME = 100_000  # context or horizon: beyond this a setting is a typo, not a plan

# A split bound written as an ISO date or date-time: "2017-07-01", "2017-07-01 12:00", "2017-07".
ISO_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2}([ T]\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?)?$")
# A pandas offset alias ("h", "15min", "MS", "W-SUN", "2D"); pandas itself judges it when data is read.
OFFSET_ALIAS = re.compile(r"^\d*[A-Za-z]+(-[A-Za-z]{3})?$")

Count = Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)]
Fraction = Annotated[StrictFloat, Field(gt=0.0, le=1.0)]
# A row count, a share of all rows, or the date the split ends before (the next split starts there).
Size = Union[Count, Fraction, str]
Column = Annotated[str, Field(min_length=1, max_length=1000)]
Columns = Annotated[list[Column], Field(max_length=10_000)]


class ForecastSplit(Section):
    """In time order, never shuffled: train, then validation, then test; rows after test are unused."""

    train: Size = 0.7
    validation: Size = 0.1
    test: Size = 0.2

    @field_validator("train", "validation", "test")
    @classmethod
    def _size(cls, value, info):
        if isinstance(value, str) and not ISO_DATE.match(value.strip()):
            raise ValueError(f"{info.field_name} is a row count (8640), a share of the rows (0.7) or an ISO date "
                             f"the split ends before ('2017-07-01'), not {value!r}")
        if info.field_name == "train" and value == 0:
            raise ValueError("train needs rows; give a count, a share or a date")
        return value.strip() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _shares_fit(self):
        shares = sum(v for v in (self.train, self.validation, self.test) if isinstance(v, float))
        if shares > 1.0 + 1e-9:
            raise ValueError(f"the shares of the rows add up to {shares:g}, more than 1")
        dates = [v for v in (self.train, self.validation, self.test) if isinstance(v, str)]
        if dates != sorted(dates, key=_date_key):
            raise ValueError(f"split dates must increase from train to test, got {', '.join(dates)}")
        return self


def _date_key(text: str) -> str:
    return text.replace("T", " ")


class Covariates(Section):
    # Known up to the forecast's start (measured alongside the targets): read over the context only.
    past: Columns = Field(default_factory=list)
    # Known ahead (a calendar, a schedule, a planned load): read over the context and the horizon too.
    future: Columns = Field(default_factory=list)


class ForecastConfig(Section):
    """What is forecast from what: the columns, the window, the frequency, the split and the gaps."""

    time: Column = "date"
    # Default: every numeric column that is not the time and not named as a covariate.
    targets: Annotated[list[Column], Field(min_length=1, max_length=10_000)] | None = None
    covariates: Covariates = Field(default_factory=Covariates)
    context: int = Field(default=336, ge=1, le=MAX_STEPS_OF_TIME)  # steps of history a forecast reads
    horizon: int = Field(default=96, ge=1, le=MAX_STEPS_OF_TIME)  # steps ahead it forecasts
    # auto: inferred from the timestamps (pandas.infer_freq); else a pandas offset alias (h, D, MS, 15min).
    frequency: str = Field(default="auto", max_length=40)
    # The seasonal-naive baseline's season and MASE's; default from the frequency (24 hourly, 7 daily, 12 monthly).
    season: int | None = Field(default=None, ge=1, le=MAX_STEPS_OF_TIME)
    split: ForecastSplit = Field(default_factory=ForecastSplit)
    # Missing timestamps and missing or non-finite values: fill (linear interpolation, reported),
    # drop (the rows go; no window spans a gap) or stop (the run stops, naming the rows).
    gaps: Literal["fill", "drop", "stop"] = "fill"
    # Each window is normalised by its own mean and spread inside the model and the forecast scaled
    # back (RevIN, Kim et al. 2022): the level shifts between train and test matter less.
    instance_norm: bool = True
    patch_length: int = Field(default=16, ge=1, le=MAX_STEPS_OF_TIME)  # patchtst
    patch_stride: int = Field(default=8, ge=1, le=MAX_STEPS_OF_TIME)  # patchtst
    moving_average: int = Field(default=25, ge=1, le=MAX_STEPS_OF_TIME)  # dlinear: the trend's window, odd
    individual: bool = False  # dlinear: one pair of linear heads per series instead of one shared
    plots: int = Field(default=3, ge=0, le=20)  # test windows drawn in the report, forecast against actual

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, value: str) -> str:
        if value != "auto" and not OFFSET_ALIAS.match(value):
            raise ValueError(f"'auto' or a pandas offset alias such as h, 15min, D, W-SUN, MS, not {value!r}")
        return value

    @field_validator("moving_average")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"the moving average is centred, so its window is odd; got {value}")
        return value

    @model_validator(mode="after")
    def _columns_once(self):
        named = [self.time, *(self.targets or []), *self.covariates.past, *self.covariates.future]
        twice = sorted({c for c in named if named.count(c) > 1})
        if twice:
            raise ValueError(f"a column has one part: {', '.join(twice)} is named more than once among time, "
                             "targets and covariates")
        return self


def _defaults(recipe) -> None:
    # A value the recipe gives itself always wins (model_fields_set holds the keys it wrote).
    if recipe.model.arch is None and not recipe.model.from_:  # a checkpoint says what it is
        recipe.model.arch = "dlinear"
    if "activation" not in recipe.model.model_fields_set:
        recipe.model.activation = "gelu"


def _arch(recipe):
    if recipe.model.arch not in (None, *ARCHS):
        return ("model.arch", f"forecasting builds {', '.join(ARCHS)}, not '{recipe.model.arch}'")
    return None


def _window(recipe):
    f = recipe.forecast
    if f.season is not None and f.season > f.context:
        return ("forecast.season", f"the seasonal-naive baseline reads one season ({f.season} steps) of the context, "
                                   f"which is {f.context}; raise forecast.context or lower forecast.season")
    if recipe.model.arch == "patchtst" and f.patch_length >= f.context:
        return ("forecast.patch_length", f"a patch of {f.patch_length} steps needs a longer context than {f.context}")
    return None


def _time_split_only(recipe):
    # The generic data keys that split or sample rows mean nothing for one series read in time order.
    data = recipe.data
    found = []
    for key in data.not_default(("split", "split_column", "limit", "features", "categorical")):
        found.append((f"data.{key}", "a forecasting run splits its series in time order by forecast.split "
                                     "and reads the columns named in forecast:; remove it"))
    for key in ("train", "validation", "test"):
        if getattr(data, key) is not None:
            found.append((f"data.{key}", "a series is one table: give it as data.source (a file, or a list of files "
                                         "read one after the other); forecast.split cuts it in time order"))
    if data.format in ("txt", "imagefolder", "image_csv", "idx"):
        found.append(("data.format", f"a series is a table of rows (csv, tsv, jsonl, json, parquet), "
                                     f"not {data.format}"))
    return found


def _validation_for_early_stopping(recipe):
    if recipe.train.early_stopping is not None and recipe.forecast.split.validation == 0:
        return ("train.early_stopping", "needs a validation split: set forecast.split.validation")
    return None


SPEC = TaskSpec(
    name="forecasting",
    kind="forecasting",
    task_class="danlu.tasks.forecasting.task:Forecasting",
    roles=(),
    input_roles=(),
    main_metric="mse",
    greater_is_better=False,
    metrics=METRICS,
    summary="a time series (one or more series, optional covariates) -> its next steps (load, demand, sensors)",
    starter="danlu.tasks.forecasting:starter.yaml",
    sample="danlu.tasks.forecasting.sample:sample",
    data_stage="danlu.tasks.forecasting.data:load",
    sections={"forecast": ForecastConfig},
    defaults=_defaults,
    checks=(_arch, _window, _time_split_only, _validation_for_early_stopping),
    capabilities=Capabilities(),
)
SPECS = (SPEC,)
