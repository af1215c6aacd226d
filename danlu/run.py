"""The run directory: where everything a run made lives, written atomically.

Layout of `runs/<name>-<time>/` (every stage asks `Run` for a path; none builds one itself):
    recipe.yaml         the resolved recipe (after defaults and overrides)
    data_report.json/md the quality gate's findings
    checkpoints/        trainer checkpoints (checkpoint-N), used to resume
    model/              the final model, loadable with save_pretrained's counterpart
    metrics.json        one object per split, the baselines, cross-validation
    pretrain/           self-supervised pretraining (its checkpoints, model, metrics.json)
    cv/fold-N/          one fold of cross-validation (checkpoints, metrics.json)
    history.json        training log (loss per step, eval per epoch)
    report.md/html      the human report, plots/ beside it
    eval-<data>.json    `danlu eval` on another file
    variants/           `danlu compress`: one folder per variant, variants.json, report.md,
                        student-run/ (a distilled student's own run), deployment.json (`danlu match`)
    export/<format>/    `danlu export`
    state.json          {"status": "running" | "done" | "failed" | "interrupted", "recipe_hash", "pid", "host" ...}
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from danlu.errors import RunError

VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes 0600 files; a report or model should be readable like any other file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# metrics.json keys that are not splits: what a run measured besides its splits' metrics.
NOT_SPLITS = frozenset({"baselines", "decision", "cross_validation", "privacy", "robustness", "train_mfu",
                        "utilisation"})


def split_metrics(metrics: dict) -> dict:
    """metrics.json's splits alone (train / validation / test / an evaluated file), in order."""
    return {k: v for k, v in metrics.items() if k not in NOT_SPLITS and isinstance(v, dict)}


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def save_atomically(folder: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """`write(tmp)` fills a temporary folder beside `folder`, which is then swapped in: a model
    killed half-saved never sits at `folder`."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays show up in metrics; keep the files plain JSON.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process of that number: alive, as far as we can tell
        return True
    return True


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


class Run:
    """Paths and state of one run directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # -- paths -------------------------------------------------------------
    @property
    def recipe_path(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.json"

    @property
    def history_path(self) -> Path:
        return self.root / "history.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def pretrain_dir(self) -> Path:
        return self.root / "pretrain"

    def fold_dir(self, number: int) -> Path:
        return self.root / "cv" / f"fold-{number}"

    def eval_path(self, data_name: str) -> Path:
        return self.root / f"eval-{data_name}.json"

    def export_dir(self, name: str) -> Path:
        return self.root / "export" / name

    # -- variants (danlu compress / match) -----------------------------------------
    @property
    def variants(self) -> Path:
        return self.root / "variants"

    def variant(self, name: str) -> Path:
        # A variant name comes from the command line or a deployment plan: it names a folder of
        # variants/, never a path elsewhere.
        if not VARIANT_NAME.fullmatch(str(name)):
            raise RunError(f"'{str(name)[:100]}' is not a variant name (letters, digits and . _ + -, such as "
                           "onnx-int8 or prune-structured-0.3+onnx-int8)")
        return self.variants / name

    @property
    def variants_table(self) -> Path:
        return self.variants / "variants.json"

    @property
    def student_run(self) -> Path:
        return self.variants / "student-run"

    @property
    def deployment_path(self) -> Path:
        return self.variants / "deployment.json"

    def deployment(self) -> dict | None:
        """The plan `danlu match` wrote, or None."""
        if not self.deployment_path.exists():
            return None
        try:
            plan = read_json(self.deployment_path)
        except (OSError, ValueError):
            raise RunError(f"{self.deployment_path}: cannot be read; run `danlu match` again") from None
        return plan if isinstance(plan, dict) else None

    # -- state -------------------------------------------------------------
    def state(self) -> dict:
        if not self.state_path.exists():
            return {}
        try:
            return read_json(self.state_path)
        except (OSError, ValueError):
            return {}

    def set_state(self, **fields: Any) -> None:
        state = self.state()
        state.update(fields, updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
        atomic_write_json(self.state_path, state)

    def mark_running(self, **fields: Any) -> None:
        """status running, with the process and host that run it, so a killed run can be told apart."""
        self.set_state(status="running", pid=os.getpid(), host=socket.gethostname(), **fields)

    def status(self) -> str:
        """The recorded status; "interrupted" for a run recorded as running whose process is gone
        (killed by SIGKILL or a power cut, which no handler sees)."""
        state = self.state()
        status = state.get("status", "unknown")
        if status == "running" and state.get("host") == socket.gethostname() and not _alive(state.get("pid")):
            return "interrupted"
        return status

    def metrics(self) -> dict:
        return read_json(self.metrics_path) if self.metrics_path.exists() else {}

    def require_model(self) -> Path:
        if not self.root.is_dir():
            raise RunError(f"{self.root}: no such run directory")
        if not (self.model_dir / "config.json").exists():
            status = self.state().get("status", "unknown")
            raise RunError(
                f"{self.root}: no finished model in {self.model_dir} (run status: {status}); "
                "train it first with `danlu train RECIPE -o DIR`"
            )
        return self.model_dir
