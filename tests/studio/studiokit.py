"""Helpers for the studio tests: run folders written by hand (the files a run writes, in their shapes), a
studio under a real server, and a browser.

servekit (tests/serve) already starts an app under uvicorn and trains the tiny text classifier; the studio
tests use it rather than a copy."""

import json
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))

from servekit import PATIENCE_S, live_server, train_text_run, wait_for  # noqa: E402

__all__ = ["PATIENCE_S", "live_server", "train_text_run", "wait_for", "write_run", "move_run", "chromium",
           "screenshot_dir", "variants_table", "write_variants", "json_of", "dead_pid", "BROWSER_ARGS"]

from danlu.run import atomic_write_json  # noqa: E402

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def write_run(root: Path, name: str, task: str = "tabular-classification", metric: str = "accuracy",
              value: float | None = 0.9, status: str = "done", baselines: dict | None = None,
              history: list | None = None, recipe: str | None = None, pid: int | None = None) -> Path:
    """A run folder as the pipeline leaves it: state.json, metrics.json, history.json, recipe.yaml and a
    model/ with a config.json."""
    run = root / name
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(recipe or f"name: {name}\ntask: {task}\ntrain:\n  lr: 0.01\n  epochs: 3\n")
    state = {"status": status, "name": name, "task": task, "main_metric": metric, "host": socket.gethostname(),
             "pid": pid if pid is not None else os.getpid(), "updated": "2026-01-01T00:00:00"}
    atomic_write_json(run / "state.json", state)
    if value is not None:
        metrics = {"test": {metric: value, "n": 100}, "validation": {metric: value, "n": 50}}
        if baselines:
            metrics["baselines"] = {"test": {b: {metric: v} for b, v in baselines.items()}}
        atomic_write_json(run / "metrics.json", metrics)
    atomic_write_json(run / "history.json", history if history is not None else
                      [{"loss": 1.0 / (i + 1), "step": 10 * (i + 1), "epoch": i + 1.0} for i in range(3)])
    (run / "model").mkdir()
    (run / "model" / "config.json").write_text("{}")
    return run


def dead_pid() -> int:
    """A process id that is not running (a child that has exited and been reaped)."""
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def move_run(run: Path, runs: Path, name: str) -> Path:
    """A run trained elsewhere (servekit and lmkit train into folders of their own), moved into `runs`."""
    target = runs / name
    shutil.move(str(run), target)
    return target


def chromium() -> str:
    for path in CHROMIUM:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("chromium")
    if not found:
        pytest.skip("no chromium found (/usr/bin/chromium; `make test` installs Debian's package): the studio's "
                    "browser tests need a real browser")
    return found


def screenshot_dir(tmp_path_factory) -> Path:
    """Where the browser tests leave their screenshots: $DANLU_STUDIO_SCREENSHOTS, else a tmp folder."""
    wanted = os.environ.get("DANLU_STUDIO_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("studio-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def variants_table(names_metrics: list[tuple[str, float, float, int]]) -> list[dict]:
    """variants.json rows in the shape `danlu compress` writes: (name, accuracy, p95 ms at batch 1, bytes)."""
    return [{"name": name, "main_metric": "accuracy", "main_value": acc, "greater_is_better": True,
             "size_bytes": size, "batch": 32, "path": f"variants/{name}", "peak_rss_bytes": 10 ** 8,
             "latency": {"1": {"p50_ms": p95 * 0.8, "p95_ms": p95, "throughput_per_s": 1000 / p95},
                         "32": {"p50_ms": p95 * 8, "p95_ms": p95 * 10, "throughput_per_s": 3200 / p95}}}
            for name, acc, p95, size in names_metrics]


def write_variants(run: Path, table: list[dict]) -> None:
    atomic_write_json(run / "variants" / "variants.json", table)


def json_of(path: Path):
    return json.loads(path.read_text())
