"""Curves from a run's history.json (Trainer's log_history shape, which both engines write as they train)
and the progress of a run that is training.

history.json is rewritten atomically after each log step, so a reader always sees a whole list; the
newest complete checkpoint (its trainer_state.json parses) says where a resume would start.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from danlu.run import Run, read_json

# Keys of an evaluation entry that are timings, not metrics.
TIMINGS = ("runtime", "samples_per_second", "steps_per_second", "n")


def history(run: Run) -> list[dict]:
    try:
        found = read_json(run.history_path)
    except (OSError, ValueError):
        return []
    return [h for h in found if isinstance(h, dict)] if isinstance(found, list) else []


def _series(entries: list[dict], key: str) -> dict:
    points = [(h["step"], h[key]) for h in entries if _number(h.get(key)) and _number(h.get("step"))]
    return {"steps": [p[0] for p in points], "values": [p[1] for p in points]}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def curves(run: Run) -> dict:
    """{"loss": training loss, "eval": {metric: series}}, each series {"steps": [...], "values": [...]}."""
    entries = history(run)
    names = sorted({k.removeprefix("eval_") for h in entries for k in h if k.startswith("eval_")
                    and k.removeprefix("eval_") not in TIMINGS and _number(h[k])})
    return {"loss": _series(entries, "loss"), "eval": {name: _series(entries, f"eval_{name}") for name in names}}


def checkpoint_steps(run: Run) -> list[int]:
    """Steps of the complete checkpoints (trainer_state.json parses), oldest first."""
    steps = []
    if run.checkpoints.is_dir():
        for folder in run.checkpoints.glob("checkpoint-*"):
            number = folder.name.removeprefix("checkpoint-")
            if number.isdigit() and _parses(folder / "trainer_state.json"):
                steps.append(int(number))
    return sorted(steps)


def _parses(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def version(run: Run) -> str:
    """Changes whenever history, state or checkpoints do: the page redraws only then."""
    stamps = []
    for path in (run.history_path, run.state_path, run.metrics_path, run.checkpoints):
        try:
            stamps.append(str(os.stat(path).st_mtime_ns))
        except OSError:
            stamps.append("-")
    return ".".join(stamps)


def progress(run: Run, budget: dict | None = None) -> dict:
    """Where a run is: its status, the last step and epoch logged, the last training loss, the checkpoints,
    and the share done when the recipe's budget (`max_steps`, else `epochs`) says how much there is."""
    entries = history(run)
    logged = [h for h in entries if _number(h.get("step"))]
    step = max((h["step"] for h in logged), default=0)
    epoch = max((h["epoch"] for h in logged if _number(h.get("epoch"))), default=0)
    loss = _series(entries, "loss")
    budget = budget or {}
    done = None
    if budget.get("max_steps"):
        done = step / budget["max_steps"]
    elif budget.get("epochs"):
        done = epoch / budget["epochs"]
    status = run.status()
    if status == "done":  # early stopping ends a run before its budget: it is done all the same
        done = 1.0
    return {"status": status, "step": step, "epoch": epoch,
            "loss": loss["values"][-1] if loss["values"] else None,
            "done": None if done is None else min(done, 1.0),
            "checkpoints": checkpoint_steps(run), "version": version(run), "curves": curves(run)}
