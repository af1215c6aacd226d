"""Forecasting: the next `horizon` steps of one or more series from the `context` steps before them.

A split is a frame of rows in time order; `encode` makes every window of context + horizon rows in it
(stride 1, none spanning a gap, none scoring a row marked `_context`), on the training scale. The
model answers the whole horizon at once. A history to forecast from (`danlu predict RUN history.csv`,
POST /v1/predict) is one input: its last `context` rows are read, and the answer is the horizon's
timestamps with one value per target. Metrics and baselines: danlu.tasks.forecasting.measure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, create_model
from torch.utils.data import Dataset

from danlu.data.values import FLOAT32_MAX, as_numbers
from danlu.errors import DanluError, DataError
from danlu.run import atomic_write_json, read_json
from danlu.tasks.base import Task, read_meta
from danlu.tasks.forecasting import measure
from danlu.tasks.forecasting.data import layout_for
from danlu.tasks.forecasting.scaling import Scaling
from danlu.tasks.forecasting.series import (CONTEXT, POSITION, Layout, after, clean, fmt_time, parse_times,
                                            raise_stops)

SCALING_FILE = "scaling.json"
HISTORY = "_history"  # a row of the frame `predict` reads from a request: one whole history
MAX_HISTORY_ROWS = 1_000_000


class SeriesForecast(BaseModel):
    target: str
    values: list[float]


class Forecast(BaseModel):
    time: list[str]  # the horizon's timestamps, after the history's last
    forecast: list[SeriesForecast]  # one per target, a value per timestamp


class Windows(Dataset):
    """Every window of a series: `starts` index the rows its context begins at."""

    def __init__(self, values: np.ndarray, starts: np.ndarray, layout: Layout, times: pd.Series, lines: np.ndarray):
        self.values, self.starts, self.layout, self.times, self.lines = values, starts, layout, times, lines

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        s, lay = int(self.starts[i]), self.layout
        end = s + lay.context
        item = {"past_values": self.values[s:end], "labels": self.values[end:end + lay.horizon, :len(lay.targets)]}
        if lay.future:
            item["future_covariates"] = self.values[end:end + lay.horizon, -len(lay.future):]
        return item


def window_starts(pos: np.ndarray, context_rows: np.ndarray, span: int, context: int) -> np.ndarray:
    """Rows a window can begin at: span rows that are consecutive steps, none of the scored ones context."""
    n = len(pos) - span + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(n)
    whole = pos[starts + span - 1] - pos[starts] == span - 1
    scored = ~context_rows[starts + context]
    return starts[whole & scored]


class Forecasting(Task):
    engine = "loop"
    # One input of `predict` is a whole history (one frame of rows), answered by one forecast.
    frame_is_one_input = True

    def __init__(self, spec, recipe=None):
        super().__init__(spec, recipe)
        self.layout: Layout | None = None
        self.scaling: Scaling | None = None

    # -- training ----------------------------------------------------------------------
    def setup(self, train: pd.DataFrame, features=(), categorical=()) -> None:
        layout = layout_for(train, self.recipe.forecast)
        if layout.season > layout.context:
            raise DanluError(f"forecast.context ({layout.context}) is shorter than one season ({layout.season} steps "
                             f"at frequency {layout.frequency}): the seasonal-naive baseline reads a season of "
                             "history; raise forecast.context or set forecast.season")
        self.layout = layout
        self.scaling = Scaling.fit(self.series(train, "the training split"), layout)

    def build_model(self):
        from danlu.tasks.forecasting.models import build
        from danlu.tasks.forecasting.pretrained import from_pretrained

        cfg, lay = self.recipe.model, self.layout
        if cfg.from_:
            return from_pretrained(cfg.from_, self.recipe.base_dir, lay)
        shape = {"embedding": cfg.embedding, "heads": cfg.heads, "layers": cfg.layers,
                 "feed_forward": cfg.feed_forward, "dropout": cfg.dropout, "activation": cfg.activation}
        return build(cfg.arch or "dlinear", shape, lay.context, lay.horizon, len(lay.targets), len(lay.past),
                     len(lay.future), self.recipe.forecast)

    def series(self, frame: pd.DataFrame, where: str) -> pd.DataFrame:
        """The frame as a clean series (series.clean), or a DataError naming the rows that stop it."""
        out, findings = clean(frame, self.layout)
        raise_stops(findings, where)
        if CONTEXT not in out.columns:
            out[CONTEXT] = False
        return out

    def encode(self, frame: pd.DataFrame, train: bool = False) -> Windows:
        lay = self.layout
        series = self.series(frame, "the training split" if train else "the series")
        span = lay.context + lay.horizon
        starts = window_starts(series[POSITION].to_numpy(), series[CONTEXT].to_numpy(dtype=bool), span, lay.context)
        if not len(starts):
            raise DataError(f"the series has {len(series):,} rows and no stretch of forecast.context + "
                            f"forecast.horizon = {span:,} consecutive steps to score: give a longer series")
        return Windows(self.scaling.transform(series), starts, lay, series[lay.time], series["_row"].to_numpy())

    def collate(self, items: list[dict]) -> dict:
        return {key: torch.as_tensor(np.stack([item[key] for item in items])) for key in items[0]}

    # -- measuring ---------------------------------------------------------------------
    def evaluate(self, forward, dataset: Windows) -> dict:
        from danlu.inference import outputs, require_finite

        predicted, labels = outputs(self, forward, dataset, batch_size=256)
        found = self.metrics(require_finite(predicted), labels)
        plots = self.recipe.forecast.plots if self.recipe is not None else measure.DEFAULT_PLOTS
        found["samples"] = measure.samples(dataset, predicted, self.scaling, plots)
        return found

    def metrics(self, outputs, label_ids) -> dict:
        return measure.metrics(np.asarray(outputs), np.asarray(label_ids), self.scaling, self.layout.targets)

    def baseline(self, frames: dict[str, pd.DataFrame], splits: list[str]) -> dict:
        from danlu.evaluate.metrics import scalar_metrics

        out = {}
        for split in splits:
            if split not in frames or not len(frames[split]):
                continue
            windows = self.encode(frames[split])
            out[split] = {name: scalar_metrics(self.metrics(guess, labels))
                          for name, (guess, labels) in measure.baselines(windows).items()}
        return out

    def baseline_names(self) -> dict[str, str]:
        season = self.layout.season if self.layout else "one season of"
        return {"naive": "the last value of the context, repeated over the horizon",
                "seasonal_naive": f"the value one season ({season} steps) before each step of the horizon"}

    def report_sections(self, metrics: dict) -> list:
        return measure.report_sections(metrics, self.layout.targets if self.layout else [])

    # -- predicting --------------------------------------------------------------------
    def predict(self, forward, frame: pd.DataFrame, batch_size: int = 64, lock=None) -> list[dict]:
        """One forecast per history: the frame itself, or each row's `_history` (a request's)."""
        from danlu.inference import outputs, require_finite
        from danlu.train.examples import Examples

        histories = [pd.DataFrame(list(h)) for h in frame[HISTORY]] if HISTORY in frame.columns else [frame]
        made = [self.history_item(h) for h in histories]
        predicted, _ = outputs(self, forward, Examples([item for item, _ in made]), batch_size)
        values = self.scaling.targets_back(require_finite(predicted))
        return self.to_json([(stamps, v) for (_, stamps), v in zip(made, values)])

    def history_item(self, frame: pd.DataFrame) -> tuple[dict, pd.DatetimeIndex]:
        """The model's input from a history's last `context` rows (rows after the last target value give
        the future covariates), and the horizon's timestamps."""
        lay = self.layout
        frame = frame.reset_index(drop=True)
        missing = [c for c in [lay.time, *lay.columns] if c not in frame.columns]
        if missing:
            raise DataError(f"the history has no column {', '.join(repr(c) for c in missing)}; it needs "
                            f"{lay.time} and {', '.join(lay.columns)}")
        present = np.zeros(len(frame), dtype=bool)
        for target in lay.targets:
            present |= ~np.isnan(as_numbers(frame[target])[0])
        last = int(np.flatnonzero(present)[-1]) + 1 if present.any() else 0
        series = self.series(frame.iloc[:last], "the history")
        if len(series) < lay.context:
            raise DataError(f"the history has {len(series):,} rows; the model reads the last "
                            f"{lay.context:,} (forecast.context)")
        tail = series.iloc[-lay.context:]
        pos = tail[POSITION].to_numpy()
        if pos[-1] - pos[0] != lay.context - 1:
            raise DataError(f"the history's last {lay.context:,} rows are not consecutive steps of "
                            f"{lay.frequency}: a gap lies among them")
        stamps = after(tail[lay.time].iloc[-1], lay.horizon, lay.frequency)
        item = {"past_values": self.scaling.transform(tail)}
        if lay.future:
            item["future_covariates"] = self.future_covariates(frame.iloc[last:], stamps)
        return item, stamps

    def future_covariates(self, rows: pd.DataFrame, stamps: pd.DatetimeIndex) -> np.ndarray:
        lay = self.layout
        need = (f"the forecast reads the future covariates ({', '.join(lay.future)}) over the horizon: give "
                f"{lay.horizon:,} rows after the history's last, from {fmt_time(stamps[0])}, with those columns "
                "filled and the targets empty")
        times = parse_times(rows[lay.time]) if len(rows) else pd.Series([], dtype="datetime64[ns]")
        if len(rows) < lay.horizon or not (pd.DatetimeIndex(times.iloc[:lay.horizon]) == stamps).all():
            raise DataError(need)
        values = np.stack([as_numbers(rows[c].iloc[:lay.horizon])[0] for c in lay.future], axis=1)
        if not np.isfinite(values).all():
            raise DataError(need)
        return self.scaling.transform_columns(values, lay.future)

    def to_json(self, outputs) -> list[dict]:
        """(timestamps, values (horizon, targets)) pairs as Forecast objects."""
        out = []
        for stamps, values in outputs:
            daily = all(s == s.normalize() for s in stamps)
            out.append({"time": [str(s.date()) if daily else str(s) for s in stamps],
                        "forecast": [{"target": name, "values": [float(v) for v in values[:, j]]}
                                     for j, name in enumerate(self.layout.targets)]})
        return out

    # -- inputs from outside -------------------------------------------------------------
    def frame_from_value(self, value: str) -> pd.DataFrame:
        try:
            found = json.loads(value)
        except ValueError:
            found = None
        if isinstance(found, dict) and isinstance(found.get("history"), list):
            found = found["history"]
        if not isinstance(found, list) or not found or not all(isinstance(r, dict) for r in found):
            raise DanluError("a forecast needs a history: a file of rows (csv, jsonl, parquet) or JSON such as "
                             f'\'{{"history": [{{"{self.layout.time}": "2018-06-01 00:00:00", ...}}, ...]}}\'')
        return pd.DataFrame(found)

    def request_item(self):
        lay = self.layout
        # Column names are arbitrary strings: the fields are c0.., their aliases the names. A number beyond
        # float32 would reach the model as infinity: refused here, with its field named in the 422.
        fields = {f"c{i}": (Optional[float], Field(None, alias=name, ge=-FLOAT32_MAX, le=FLOAT32_MAX))
                  for i, name in enumerate(lay.columns)}
        row = create_model("HistoryRow", __config__=ConfigDict(extra="ignore", allow_inf_nan=False),
                           t=(str, Field(alias=lay.time, min_length=1, max_length=100)), **fields)
        return create_model("History", __config__=ConfigDict(extra="forbid"),
                            history=(list[row], Field(min_length=lay.context, max_length=MAX_HISTORY_ROWS)))

    def rows_from_request(self, inputs: list) -> list[dict]:
        return [{HISTORY: [r.model_dump(by_alias=True) for r in item.history]} for item in inputs]

    def response_item(self) -> type[BaseModel]:
        return Forecast

    def card(self) -> dict:
        lay = self.layout
        return {**super().card(), "input": "history", "targets": lay.targets, "covariates": lay.past + lay.future,
                "context": lay.context, "horizon": lay.horizon, "frequency": lay.frequency}

    def input_facts(self) -> dict:
        lay = self.layout
        return {"series": f"{len(lay.targets)} targets, {len(lay.past)} past and {len(lay.future)} future covariates",
                "context / horizon": f"{lay.context} / {lay.horizon} steps",
                "frequency": f"{lay.frequency} (season {lay.season})"}

    def notes(self) -> list[str]:
        if self.recipe is not None and self.recipe.model.arch == "patchtst" and self.layout and self.layout.future:
            return ["patchtst reads the future covariates over the context only (it has no input for the horizon)"]
        return []

    # -- saving --------------------------------------------------------------------------
    def save(self, model, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
        atomic_write_json(Path(out_dir) / SCALING_FILE, self.scaling.to_json())
        self.save_meta(out_dir, layout=self.layout.to_json())

    def load(self, model_dir: Path):
        from danlu.tasks.forecasting.pretrained import load_saved

        meta = read_meta(model_dir)
        try:
            self.layout = Layout.from_json(meta["layout"])
            self.scaling = Scaling.from_json(read_json(Path(model_dir) / SCALING_FILE))
        except (KeyError, TypeError, OSError, ValueError) as exc:
            raise DataError(f"{model_dir}: not a complete forecasting model ({exc})") from None
        return load_saved(model_dir)
