"""One row per run for the runs page, and its sorting and filtering.

A row is rebuilt only when the run's state.json or metrics.json changes (their modification times are the
cache key), so serving the page for hundreds of runs reads two small files' times per run. The status is
read fresh every time: a run whose process died changes no file (danlu.run.Run.status).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from danlu import registry
from danlu.errors import DanluError
from danlu.evaluate.metrics import scalar_metrics
from danlu.run import Run

SPLITS = ("test", "validation")  # where the main metric is read, first found
COLUMNS = ("name", "task", "status", "metric", "baseline", "duration", "size", "updated")


@dataclass
class Row:
    name: str
    task: str
    main_metric: str | None
    split: str | None = None  # where `value` was measured
    value: float | None = None
    baseline: str | None = None  # the best baseline on the same split
    baseline_value: float | None = None
    higher_is_better: bool = True
    started: float | None = None  # the recipe written: the run's (last) start
    ended: float | None = None  # the state last written, for a run that is not running
    size_bytes: int | None = None  # the saved model
    updated: str = ""
    status: str = "unknown"
    error: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started is None:
            return None
        end = time.time() if self.status == "running" or self.ended is None else self.ended
        return max(0.0, end - self.started)

    @property
    def beats_baseline(self) -> bool | None:
        if self.value is None or self.baseline_value is None:
            return None
        return self.value > self.baseline_value if self.higher_is_better else self.value < self.baseline_value


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _folder_bytes(folder: Path) -> int | None:
    if not folder.is_dir():
        return None
    total = 0
    for top, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(top, name)).st_size
            except OSError:
                pass
    return total


def _direction(task: str, metric: str) -> bool:
    try:
        return registry.get(task).higher_is_better(metric)
    except DanluError:  # a task this installation does not know (a run from elsewhere): by the metric's name
        return metric not in registry.LOWER_IS_BETTER


def build_row(name: str, run: Run) -> Row:
    state = run.state()
    task, main = str(state.get("task", "?")), state.get("main_metric")
    row = Row(name=name, task=task, main_metric=main, updated=str(state.get("updated", "")),
              error=state.get("error"), started=_mtime(run.recipe_path), ended=_mtime(run.state_path),
              size_bytes=_folder_bytes(run.model_dir))
    try:
        metrics = run.metrics()
    except (OSError, ValueError):
        metrics = {}
    if not main:
        return row
    row.higher_is_better = _direction(task, main)
    for split in SPLITS:
        value = scalar_metrics(metrics.get(split) or {}).get(main)
        if value is not None:
            row.split, row.value = split, value
            break
    found = {b: m[main] for b, m in ((metrics.get("baselines") or {}).get(row.split) or {}).items()
             if isinstance(m, dict) and isinstance(m.get(main), (int, float))}
    if found:
        pick = max if row.higher_is_better else min
        row.baseline = pick(found, key=found.get)
        row.baseline_value = found[row.baseline]
    return row


class Summaries:
    """Rows for every run of a folder, each rebuilt only when its files change."""

    def __init__(self, folder):
        self.folder = folder
        self._rows: dict[str, tuple[tuple, Row]] = {}
        self._lock = threading.Lock()

    def rows(self) -> list[Row]:
        out = []
        for name in self.folder.names():
            run = self.folder.run(name)
            key = (_mtime(run.state_path), _mtime(run.metrics_path), _mtime(run.model_dir))
            with self._lock:
                cached = self._rows.get(name)
            if cached is None or cached[0] != key:
                cached = (key, build_row(name, run))
                with self._lock:
                    self._rows[name] = cached
            out.append(replace(cached[1], status=run.status()))
        return out


def _sort_key(column: str):
    def key(row: Row):
        value = {"name": row.name, "task": row.task, "status": row.status, "metric": row.value,
                 "baseline": row.baseline_value, "duration": row.duration_s, "size": row.size_bytes,
                 "updated": row.updated}[column]
        return (value is None or value == "", value if value is not None else 0)
    return key


def select(rows: list[Row], sort: str = "updated", descending: bool = True, query: str = "",
           task: str = "", status: str = "") -> list[Row]:
    """Rows whose name contains `query` (any case), of `task` and `status` when given, sorted by `sort`;
    rows without a value for the column come last either way."""
    query = query.strip().lower()
    kept = [r for r in rows if (not query or query in r.name.lower()) and (not task or r.task == task)
            and (not status or r.status == status)]
    sort = sort if sort in COLUMNS else "updated"
    present = [r for r in kept if not _sort_key(sort)(r)[0]]
    absent = [r for r in kept if _sort_key(sort)(r)[0]]
    return sorted(present, key=_sort_key(sort), reverse=descending) + sorted(absent, key=lambda r: r.name)
