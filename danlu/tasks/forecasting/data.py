"""The forecasting data stage: one series read, checked and split in time order.

`load(recipe)` reads the rows with danlu.data's readers, runs the series through `series.clean` (whose
findings are the gate's rules, each with its rows), then cuts train, validation and test in time order.
Validation and test frames start with the `context` rows just before them (marked `_context`): their
first windows read their history there, as the ETT benchmarks do, while every target a window scores
lies inside its own split, and no training window reaches past the training rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from danlu.data import QualityReport, Rule, Splits
from danlu.data.paths import display_path
from danlu.data.sources import read_source
from danlu.errors import DataError
from danlu.tasks.forecasting.series import (CONTEXT, Finding, Layout, check_frequency, clean, default_targets,
                                            fmt_time, infer_frequency, parse_times, require_columns,
                                            season_of, stops)

SPLITS = ("train", "validation", "test")


def load(recipe) -> tuple[Splits, QualityReport]:
    cfg = recipe.forecast
    frame, read_note = read_series(recipe)
    layout = layout_for(frame, cfg)
    series, findings = clean(frame, layout)
    notes = [read_note, f"frequency {layout.frequency} ({'given' if cfg.frequency != 'auto' else 'inferred'}), "
                        f"season {layout.season} steps"]
    if stops(findings):
        return Splits({"train": series}, notes=notes), report_of(findings, {}, {}, notes)
    sizes = split_sizes(series, cfg.split, layout.time)
    check_windows(sizes, layout)
    frames = cut(series, sizes, layout.context)
    for part in frames.values():
        part.attrs["frequency"] = layout.frequency  # setup reads the same frequency the gate used
    findings.append(constant_series(frames["train"], layout))
    notes += window_notes(frames, sizes, len(series), layout)
    dropped = _dropped(frame, series, layout)
    counts = {name: {"read": sizes[name], "kept": sizes[name]} for name in SPLITS if sizes[name]}
    splits = Splits({name: frames[name] for name in SPLITS if name in frames}, notes=notes,
                    dropped={"series": dropped} if dropped else {})
    return splits, report_of(findings, counts, splits.dropped, notes)


def read_series(recipe) -> tuple[pd.DataFrame, str]:
    """The rows of data.source (a list of files is read one after the other)."""
    data = recipe.data
    if data.source is None:
        raise DataError("no data: set data.source to the series file")
    frame = read_source(data.source, data, recipe.base_dir)
    if isinstance(frame, dict):
        raise DataError(f"{data.source} holds several splits ({', '.join(frame)}); a series is one table of rows")
    names = sorted({display_path(s) for s in frame["_source"].unique()}) if "_source" in frame else ["data"]
    return frame, f"read {len(frame):,} rows from {', '.join(names)}"


def layout_for(frame: pd.DataFrame, cfg) -> Layout:
    """The columns, window and frequency a recipe's `forecast:` means for this series."""
    require_columns(frame, [cfg.time], "forecast.time")
    past, future = list(cfg.covariates.past), list(cfg.covariates.future)
    require_columns(frame, past, "forecast.covariates.past")
    require_columns(frame, future, "forecast.covariates.future")
    if cfg.targets is not None:
        require_columns(frame, list(cfg.targets), "forecast.targets")
    targets = list(cfg.targets) if cfg.targets is not None else default_targets(frame, cfg.time, past + future)
    frequency = frequency_of(frame, cfg)
    season = cfg.season or season_of(frequency)
    return Layout(time=cfg.time, targets=targets, past=past, future=future, context=cfg.context,
                  horizon=cfg.horizon, frequency=frequency, season=season, gaps=cfg.gaps)


def frequency_of(frame: pd.DataFrame, cfg) -> str:
    if cfg.frequency != "auto":
        return check_frequency(cfg.frequency)
    known = frame.attrs.get("frequency")
    if known:
        return known
    found = infer_frequency(parse_times(frame[cfg.time]))
    if found is None:
        raise DataError(f"cannot infer the frequency of '{cfg.time}' (too few rows, or no stretch of evenly "
                        "spaced timestamps); set forecast.frequency, e.g. h, D or MS")
    return found


# -- the split ------------------------------------------------------------------------
def split_sizes(series: pd.DataFrame, split, time: str) -> dict[str, int]:
    """Rows per split, in order; a date means the split ends before it."""
    n, start, sizes = len(series), 0, {}
    times = series[time]
    for name in SPLITS:
        value = getattr(split, name)
        if isinstance(value, str):
            end = int((times < _date(value, name)).sum())
            if end < start:
                raise DataError(f"forecast.split.{name}: {value} is before the end of the split above it "
                                f"({fmt_time(times.iloc[start - 1])})")
            size = end - start
        elif isinstance(value, float):
            size = math.floor(value * n)
        else:
            size = int(value)
        sizes[name] = size
        start += size
    if start > n:
        asked = ", ".join(f"{k} {v:,}" for k, v in sizes.items())
        raise DataError(f"forecast.split asks for {start:,} rows ({asked}); the series has {n:,}")
    return sizes


def _date(value: str, name: str) -> pd.Timestamp:
    stamp = pd.to_datetime(value, errors="coerce")
    if pd.isna(stamp):
        raise DataError(f"forecast.split.{name}: {value!r} is not a date")
    return stamp


def check_windows(sizes: dict[str, int], layout: Layout) -> None:
    span = layout.context + layout.horizon
    if sizes["train"] < span:
        raise DataError(f"the training split has {sizes['train']:,} rows; one training window needs "
                        f"forecast.context + forecast.horizon = {span:,}: give more training rows or shorten them")
    for name in ("validation", "test"):
        if 0 < sizes[name] < layout.horizon:
            raise DataError(f"forecast.horizon ({layout.horizon:,}) is longer than the {name} split "
                            f"({sizes[name]:,} rows): no {name} window fits; give the split at least "
                            f"{layout.horizon:,} rows or shorten the horizon")


def cut(series: pd.DataFrame, sizes: dict[str, int], context: int) -> dict[str, pd.DataFrame]:
    """Train, then validation and test, each led by the `context` rows before it (marked `_context`)."""
    frames, start = {}, 0
    for name in SPLITS:
        end = start + sizes[name]
        if sizes[name]:
            lead = 0 if name == "train" else min(context, start)
            part = series.iloc[start - lead:end].reset_index(drop=True)
            part[CONTEXT] = np.arange(len(part)) < lead
            frames[name] = part
        start = end
    return frames


# -- the report -----------------------------------------------------------------------
def constant_series(train: pd.DataFrame, layout: Layout) -> Finding:
    flat = [t for t in layout.targets if float(np.nanstd(train[t].to_numpy(dtype=np.float64))) == 0.0]
    if not flat:
        return Finding("constant_series")
    return Finding("constant_series", len(flat), [],
                   f"{', '.join(flat)} never change{'s' * (len(flat) == 1)} over the training rows: nothing to "
                   "learn there (scaled by 1, and left out of MASE); drop them from forecast.targets")


def window_notes(frames: dict[str, pd.DataFrame], sizes: dict[str, int], rows: int, layout: Layout) -> list[str]:
    out = []
    for name, frame in frames.items():
        first = frame.loc[~frame[CONTEXT], layout.time]
        out.append(f"{name}: {sizes[name]:,} rows, {fmt_time(first.iloc[0])} to {fmt_time(first.iloc[-1])}"
                   + (f", its first windows reading their context from the {int(frame[CONTEXT].sum()):,} rows "
                      "before it" if frame[CONTEXT].any() else ""))
    used = sum(sizes.values())
    if used < rows:
        out.append(f"{rows - used:,} rows after the test split are not used")
    return out


def _dropped(raw: pd.DataFrame, series: pd.DataFrame, layout: Layout) -> dict[str, list[int]]:
    if layout.gaps != "drop":
        return {}
    kept = set(series["_row"].tolist())
    gone = [int(r) for r in raw["_row"] if int(r) not in kept] if "_row" in raw else []
    return {"missing or non-finite values": gone} if gone else {}


def report_of(findings: list[Finding], counts: dict, dropped: dict, notes: list[str]) -> QualityReport:
    rules = [Rule(name=f.name, passed=not f.found or not (f.stop or f.name == "constant_series"),
                  observed=f.count, threshold=0, count=f.count, examples=[f"line {r}" for r in f.rows],
                  message=f.message or "none", fatal=f.stop) for f in findings]
    return QualityReport(rules=rules, counts=counts, dropped=dropped, notes=notes)

