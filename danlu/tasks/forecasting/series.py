"""One series as rows in time order: its columns, its timestamps, its frequency and what is wrong with it.

`clean` is the one place a frame of rows becomes a regular series, for the data stage (whose findings
become the quality gate's rules), for `danlu eval --data FILE` and for a history to forecast from (where
a finding that stops is a DataError naming the rows). Every row keeps `_row`, its line in the source, so
a message can say "line 812"; a row that filling inserted has `_row` 0.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from danlu.data.values import as_numbers, mostly_numbers, short_repr
from danlu.errors import DataError

MAX_LISTED = 5
POSITION, CONTEXT = "_pos", "_context"  # the step on the frequency's grid; a row read only as context


@dataclass
class Layout:
    """What a forecaster reads and writes, fixed when it is set up and saved with the model."""

    time: str
    targets: list[str]
    past: list[str]
    future: list[str]
    context: int
    horizon: int
    frequency: str
    season: int
    gaps: str = "fill"

    @property
    def columns(self) -> list[str]:
        """Every column the model reads, in the order of its input channels."""
        return [*self.targets, *self.past, *self.future]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Layout:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Finding:
    """One thing the gate checks: its rows, what was done about it, and whether it stops the run."""

    name: str
    count: int = 0
    rows: list[int] = field(default_factory=list)  # source lines, the first few
    message: str = ""
    stop: bool = False  # nothing sensible can be trained or forecast past it

    @property
    def found(self) -> bool:
        return self.count > 0


def listed(rows) -> str:
    rows = [int(r) for r in rows]
    shown = ", ".join(str(r) for r in rows[:MAX_LISTED])
    return shown + (f" and {len(rows) - MAX_LISTED:,} more" if len(rows) > MAX_LISTED else "")


def source_lines(frame: pd.DataFrame) -> np.ndarray:
    if "_row" in frame.columns:
        return frame["_row"].to_numpy(dtype=np.int64)
    return np.arange(1, len(frame) + 1, dtype=np.int64)


def fmt_time(stamp: pd.Timestamp) -> str:
    return str(pd.Timestamp(stamp))


# -- columns -------------------------------------------------------------------------
def require_columns(frame: pd.DataFrame, names: list[str], what: str) -> None:
    columns = [str(c) for c in frame.columns if not str(c).startswith("_")]
    for name in names:
        if name not in frame.columns:
            close = difflib.get_close_matches(name, columns, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise DataError(f"no column '{name}' ({what}); columns are: {', '.join(columns)}{hint}")


def default_targets(frame: pd.DataFrame, time: str, covariates: list[str]) -> list[str]:
    """Every column of numbers that is not the time or a covariate, in file order. A column of numbers with
    a stray `?` in it is still one (the gate reports the cell), not silently left out."""
    out = []
    for column in frame.columns:
        name, values = str(column), frame[column]
        if name.startswith("_") or name == time or name in covariates or pd.api.types.is_bool_dtype(values):
            continue
        if pd.api.types.is_numeric_dtype(values) or (values.dtype == object or pd.api.types.is_string_dtype(values)
                                                     ) and mostly_numbers(values):
            out.append(name)
    if not out:
        raise DataError(f"no column of numbers to forecast besides '{time}' and the covariates; "
                        "name them in forecast.targets")
    return out


# -- time ----------------------------------------------------------------------------
def parse_times(values: pd.Series) -> pd.Series:
    """The timestamps, NaT where a cell is empty or not a date."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(values):
        # Bare numbers would read as nanoseconds since 1970: a column of them is no time column.
        return pd.Series(pd.NaT, index=range(len(values)), dtype="datetime64[ns]")
    text = values.astype("string").str.strip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format": then each is parsed alone
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
        if parsed.isna().all():
            parsed = pd.to_datetime(text, errors="coerce")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert(None)  # UTC, naive: offsets compare the same
    return parsed.reset_index(drop=True)


def infer_frequency(times: pd.Series) -> str | None:
    """pandas' frequency of the timestamps; where gaps hide it from infer_freq, the frequency of the
    longest stretches of evenly spaced rows."""
    index = pd.DatetimeIndex(times.dropna().drop_duplicates().sort_values())
    if len(index) < 3:
        return None
    found = _infer(index)
    if found:
        return found
    votes: dict[str, int] = {}
    step = 12
    for start in range(0, max(len(index) - step, 1), max((len(index) - step) // 50, 1)):
        guess = _infer(index[start:start + step])
        if guess:
            votes[guess] = votes.get(guess, 0) + 1
    return max(votes, key=votes.get) if votes else None


def _infer(index: pd.DatetimeIndex) -> str | None:
    if len(index) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3 announces an offset instead of a string: both read below
        try:
            found = pd.infer_freq(index)
        except (TypeError, ValueError):
            return None
    return getattr(found, "freqstr", found)


def season_of(frequency: str) -> int:
    """Steps in one season: a day for data within a day (24 hourly), a week of days, a year of weeks,
    months or quarters; 1 where there is none."""
    offset = pd.tseries.frequencies.to_offset(frequency)
    kind, n = type(offset).__name__, max(offset.n, 1)
    yearly = {"MonthBegin": 12, "MonthEnd": 12, "BusinessMonthBegin": 12, "BusinessMonthEnd": 12,
              "QuarterBegin": 4, "QuarterEnd": 4, "Week": 52, "BusinessDay": 5}
    if kind in yearly:
        return max(yearly[kind] // n, 1)
    try:
        step = pd.Timedelta(offset)
    except (TypeError, ValueError):
        return 1
    day = pd.Timedelta(days=1)
    if step < day:
        return max(int(day // step), 1)
    return 7 if step == day else 1


def check_frequency(frequency: str) -> str:
    try:
        return pd.tseries.frequencies.to_offset(frequency).freqstr
    except (TypeError, ValueError):
        raise DataError(f"forecast.frequency: '{frequency}' is not a pandas frequency (h, 15min, D, W-SUN, MS)") \
            from None


def grid(times: pd.Series, frequency: str) -> np.ndarray:
    """Each timestamp's step on the frequency's grid from the first one; -1 for one off the grid."""
    if not len(times):
        return np.zeros(0, dtype=np.int64)
    first, last = times.iloc[0], times.iloc[-1]
    offset = pd.tseries.frequencies.to_offset(frequency)
    try:
        step = pd.Timedelta(offset)
    except (TypeError, ValueError):
        step = None
    if step is not None:
        delta = (times - first).to_numpy(dtype="timedelta64[ns]").astype(np.int64)
        size = step.value
        return np.where(delta % size == 0, delta // size, -1).astype(np.int64)
    steps = pd.date_range(first, last, freq=offset)
    return pd.DatetimeIndex(steps).get_indexer(pd.DatetimeIndex(times)).astype(np.int64)


# -- the gate ------------------------------------------------------------------------
def clean(frame: pd.DataFrame, layout: Layout, gaps: str | None = None) -> tuple[pd.DataFrame, list[Finding]]:
    """A regular series from rows: times parsed and sorted, values numbers, gaps handled by `gaps` (the
    layout's by default). Returns (the series with `_pos`, the findings); when a finding stops, the frame
    is the rows as far as they could be read."""
    gaps = gaps or layout.gaps
    lines = source_lines(frame)
    out = frame.reset_index(drop=True).copy()
    out["_row"] = lines
    times = parse_times(out[layout.time])
    found = [_unparseable(out[layout.time], times, lines)]
    if found[0].stop:
        return out, found
    out[layout.time] = times
    found.append(_duplicates(out, layout.time))
    if found[-1].stop:
        return out, found
    order, out = _order(out, layout.time, gaps)
    found += [order, *_numbers(out, layout, gaps)]
    if stops(found):
        return out, found
    out[POSITION] = grid(out[layout.time], layout.frequency)
    found.append(_off_grid(out, layout))
    if found[-1].stop:
        return out, found
    found.append(_missing_steps(out, layout, gaps))
    if stops(found):
        return out, found
    return _handle_gaps(out, layout, gaps), found


def stops(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.found and f.stop]


def raise_stops(findings: list[Finding], where: str) -> None:
    """One DataError naming every finding that stops, with its rows."""
    bad = stops(findings)
    if bad:
        raise DataError(f"{where}: " + "; ".join(f"{f.name}: {f.message}" for f in bad))


def _unparseable(raw: pd.Series, times: pd.Series, lines: np.ndarray) -> Finding:
    bad = times.isna().to_numpy()
    if not bad.any():
        return Finding("unparseable_time")
    at = np.flatnonzero(bad)
    return Finding("unparseable_time", len(at), lines[at][:MAX_LISTED].tolist(),
                   f"{len(at):,} timestamps are empty or not dates (the first: {short_repr(raw.iloc[at[0]])}) at "
                   f"lines {listed(lines[at])}; write them as ISO dates such as 2016-07-01 00:00:00", stop=True)


def _duplicates(frame: pd.DataFrame, time: str) -> Finding:
    twice = frame[time].duplicated(keep=False).to_numpy()
    if not twice.any():
        return Finding("duplicate_timestamps")
    rows = frame.loc[twice, "_row"].to_numpy()
    first = fmt_time(frame.loc[twice, time].iloc[0])
    return Finding("duplicate_timestamps", len(rows), rows[:MAX_LISTED].tolist(),
                   f"{len(rows):,} rows share their timestamp with another row (the first: {first}) at lines "
                   f"{listed(rows)}; keep one row per timestamp (remove or aggregate the repeats)", stop=True)


def _order(frame: pd.DataFrame, time: str, gaps: str) -> tuple[Finding, pd.DataFrame]:
    values = frame[time].to_numpy()
    back = np.flatnonzero(values[1:] < values[:-1]) + 1
    if not len(back):
        return Finding("time_order"), frame
    rows = frame["_row"].to_numpy()[back]
    message = f"{len(back):,} rows come earlier in time than the row above them, at lines {listed(rows)}"
    if gaps == "stop":
        return Finding("time_order", len(back), rows[:MAX_LISTED].tolist(),
                       message + "; sort the file by time, or set forecast.gaps: fill or drop to have it sorted",
                       stop=True), frame
    ordered = frame.sort_values(time, kind="stable").reset_index(drop=True)
    return Finding("time_order", len(back), rows[:MAX_LISTED].tolist(), message + "; sorted by time"), ordered


def _role(name: str, layout: Layout) -> str:
    return "target" if name in layout.targets else "covariate"


def _numbers(frame: pd.DataFrame, layout: Layout, gaps: str) -> list[Finding]:
    """The columns as float64 in place: a column of text stops; a stray cell that is no finite number
    (text, inf, 1e300) and an empty cell become gaps, handled by `gaps`."""
    lines = frame["_row"].to_numpy()
    text: list[str] = []
    bad_any = np.zeros(len(frame), dtype=bool)
    empty_any = np.zeros(len(frame), dtype=bool)
    for name in layout.columns:
        raw = frame[name]
        numbers, bad = as_numbers(raw)
        empty = np.isnan(numbers) & ~bad
        there = ~empty
        if not there.any() or bad[there].mean() > 0.5:
            at = np.flatnonzero(bad)
            example = f" (line {int(lines[at[0]])}: {short_repr(raw.iloc[at[0]])})" if len(at) else ""
            what = "holds no values" if not there.any() else "is not a column of numbers"
            text.append(f"{_role(name, layout)} '{name}' {what}{example}, lines {listed(lines[at]) or 'all'}")
        frame[name] = numbers
        bad_any |= bad
        empty_any |= empty
    handled = {"fill": "filled by linear interpolation", "drop": "their rows dropped (no window spans them)",
               "stop": "fix them, or set forecast.gaps: fill or drop"}[gaps]
    found = [Finding("non_numeric_columns", len(text), [], "; ".join(text) + "; name columns of numbers",
                     stop=True) if text else Finding("non_numeric_columns")]
    for name, mask, what in (("non_finite_values", bad_any, "hold text, an infinity or a number beyond float32"),
                             ("missing_values", empty_any, "have an empty value")):
        rows = lines[mask]
        found.append(Finding(name, len(rows), rows[:MAX_LISTED].tolist(),
                             f"{len(rows):,} rows {what} at lines {listed(rows)}; {handled}", stop=gaps == "stop")
                     if len(rows) else Finding(name))
    return found


def _off_grid(frame: pd.DataFrame, layout: Layout) -> Finding:
    off = frame[POSITION].to_numpy() < 0
    if not off.any():
        return Finding("off_frequency")
    rows = frame.loc[off, "_row"].to_numpy()
    first = fmt_time(frame[layout.time].iloc[0])
    return Finding("off_frequency", len(rows), rows[:MAX_LISTED].tolist(),
                   f"{len(rows):,} timestamps fall between the steps of frequency {layout.frequency} counted from "
                   f"the first ({first}), at lines {listed(rows)}; set forecast.frequency to the data's", stop=True)


def _missing_steps(frame: pd.DataFrame, layout: Layout, gaps: str) -> Finding:
    pos = frame[POSITION].to_numpy()
    jumps = np.flatnonzero(np.diff(pos) > 1)
    if not len(jumps):
        return Finding("missing_timestamps")
    missing = int((np.diff(pos)[jumps] - 1).sum())
    rows = frame["_row"].to_numpy()[jumps]
    where = ", ".join(f"{int(pos[j + 1] - pos[j] - 1):,} after line {int(frame['_row'].iloc[j])} "
                      f"({fmt_time(frame[layout.time].iloc[j])})" for j in jumps[:MAX_LISTED])
    more = f" and {len(jumps) - MAX_LISTED:,} more gaps" if len(jumps) > MAX_LISTED else ""
    handled = {"fill": "inserted and filled by linear interpolation",
               "drop": "left out: no window spans a gap",
               "stop": "fill them in the file, or set forecast.gaps: fill or drop"}[gaps]
    return Finding("missing_timestamps", missing, rows[:MAX_LISTED].tolist(),
                   f"{missing:,} timestamps of frequency {layout.frequency} are missing: {where}{more}; {handled}",
                   stop=gaps == "stop")


def _handle_gaps(frame: pd.DataFrame, layout: Layout, gaps: str) -> pd.DataFrame:
    columns = layout.columns
    if gaps == "drop":
        keep = ~frame[columns].isna().any(axis=1).to_numpy()
        return frame.loc[keep].reset_index(drop=True)
    pos = frame[POSITION].to_numpy()
    if len(pos) and (pos[-1] + 1 > len(frame) or frame[columns].isna().to_numpy().any()):
        full = frame.set_index(POSITION).reindex(np.arange(pos[-1] + 1))
        full[layout.time] = steps_from(frame[layout.time].iloc[0], len(full), layout.frequency)
        full[columns] = full[columns].interpolate(method="linear", limit_direction="both")
        full["_row"] = full["_row"].fillna(0).astype(np.int64)
        for extra in ("_source", CONTEXT):
            if extra in full.columns:
                full[extra] = full[extra].ffill().bfill()
        if CONTEXT in full.columns:
            full[CONTEXT] = full[CONTEXT].astype(bool)
        frame = full.rename_axis(POSITION).reset_index()
    return frame


def steps_from(first: pd.Timestamp, count: int, frequency: str) -> pd.DatetimeIndex:
    return pd.date_range(first, periods=count, freq=pd.tseries.frequencies.to_offset(frequency))


def after(last: pd.Timestamp, count: int, frequency: str) -> pd.DatetimeIndex:
    """The `count` timestamps that follow `last`."""
    return steps_from(last, count + 1, frequency)[1:]
