"""Experiment tracking: a run's resolved recipe, its metrics per step and at the end, and its artifacts,
logged to MLflow (`track: {mlflow: true | URI}`).

Why MLflow's client and not its fluent API: the fluent API keeps one active run per process in a
global, and `danlu tune` logs a parent run and its trials (child runs) from one process.

Why off by default: importing MLflow and creating its database costs seconds, and MLflow 3 keeps
its plain file store in maintenance mode; `mlflow: true` gives a SQLite database in the runs folder,
the local store MLflow recommends, with the artifacts in a folder beside it.

The run is opened before training starts (so a tracker that cannot be written stops the run at
once, with one message). Its metrics go to the tracker live, each history entry as an engine logs it
(`LiveLog`, an EvalWatcher both engines call); when training ends, whatever history.json holds that the
tracker does not (an engine without the hook, a live write that failed, the steps of an earlier process
of a resumed run) is logged from the file, so each point is logged once.

`track: {tensorboard: true}` also writes TensorBoard event files (torch.utils.tensorboard, which needs
the `tensorboard` package of danlu[scale]) into RUN/tensorboard, or a folder named there.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from danlu.errors import DanluError
from danlu.evaluate.metrics import scalar_metrics
from danlu.run import Run
from danlu.train.fitting import EvalWatcher

log = logging.getLogger("danlu")

# MLflow's HTTP client retries for minutes by default: an unreachable server should fail fast.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
ARTIFACTS = ("report.md", "report.html", "metrics.json", "history.json", "recipe.yaml", "data_report.md")
MAX_PARAM = 500  # MLflow refuses longer parameter values on some stores
BATCH = 900  # MLflow takes at most 1000 metrics per log_batch


class TrackingError(DanluError):
    """The tracker named in `track:` cannot be reached or written."""


def tracking_uri(setting: bool | str, runs_root: str | Path) -> tuple[str, str | None]:
    """The tracking URI and, for a local database, the folder its artifacts go to.

    true -> runs_root/mlflow.db; a URI with a scheme is used as it is; a path ending in .db is a SQLite
    database; any other path is a folder holding one (mlflow.db) and the artifacts."""
    if setting is True:
        folder = Path(runs_root)
        return _sqlite(folder / "mlflow.db"), str((folder / "mlartifacts").resolve())
    text = str(setting)
    if "://" in text or text.startswith(("databricks", "file:")):
        return text, None
    path = Path(text).expanduser()
    if path.suffix == ".db":
        return _sqlite(path), str((path.parent / "mlartifacts").resolve())
    return _sqlite(path / "mlflow.db"), str((path / "mlartifacts").resolve())


def _sqlite(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    """{"train": {"lr": 0.1}} -> {"train.lr": "0.1"}: the recipe's key paths, as overrides name them."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            text = json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value)
            flat[name] = text[:MAX_PARAM]
    return flat


class Tracker:
    """One MLflow experiment; `start` opens a run in it, `finish` logs a finished run directory."""

    def __init__(self, uri: str, experiment: str, artifacts: str | None = None, log_model: bool = False):
        for key, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.uri, self.experiment, self.artifacts, self.log_model = uri, experiment, artifacts, log_model
        self._client = None
        self._experiment_id = None

    @classmethod
    def for_recipe(cls, recipe, runs_root: str | Path = "runs") -> Tracker | None:
        cfg = recipe.track
        if cfg is None or cfg.mlflow is False:
            return None
        uri, artifacts = tracking_uri(cfg.mlflow, runs_root)
        return cls(uri, cfg.experiment or recipe.name, artifacts, cfg.log_model)

    @property
    def client(self):
        if self._client is None:
            self._client = self._guard("open", self._open)
        return self._client

    def _open(self):
        # Its database migrations log at INFO on every new store: not danlu's console's business.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        client = MlflowClient(tracking_uri=self.uri)
        found = client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                self._experiment_id = client.create_experiment(self.experiment, artifact_location=(
                    Path(self.artifacts).as_uri() if self.artifacts else None))
            except Exception:  # another process created it first (two `danlu tune` on one study)
                found = client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise
        if found is not None:
            self._experiment_id = found.experiment_id
        return client

    def _guard(self, what: str, action, *args, **kwargs):
        try:
            return action(*args, **kwargs)
        except DanluError:
            raise
        except Exception as exc:  # MLflow, SQLAlchemy and OS errors alike: the store is unusable
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise TrackingError(f"track.mlflow: cannot {what} the tracker at {self.uri}: {first}") from None

    def start(self, name: str, params: dict, parent: str | None = None, resume: str | None = None) -> str:
        """A new run (a child of `parent` when given) with the recipe's keys as parameters, or the run
        `resume` names when it exists (an interrupted run resumed). Returns its id."""
        client = self.client
        if resume:
            try:
                client.get_run(resume)
                return resume
            except Exception:
                log.info("tracker run %s not found; starting a new one", resume)
        tags = {"mlflow.runName": name, "danlu": "1"}
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = self._guard("write", client.create_run, self._experiment_id, tags=tags, run_name=name)
        run_id = run.info.run_id
        self._guard("write", self._log_params, run_id, flatten(params))
        return run_id

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's limit per batch
            self.client.log_batch(run_id, params=items[i:i + 100])

    def log_metrics(self, run_id: str, values: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = _millis()
        items = [Metric(k, float(v), now, step) for k, v in values.items()]
        self._guard("write", self.client.log_batch, run_id, metrics=items)

    def finish(self, run_id: str, run: Run) -> None:
        """Log a finished run directory: history.json per step, metrics.json per split, the artifacts."""
        self._guard("write", self._finish, run_id, run)

    def live(self, run_id: str) -> LiveLog:
        """An EvalWatcher that sends each history entry to this run as the engine logs it."""
        return LiveLog(self, run_id)

    def _finish(self, run_id: str, run: Run) -> None:
        from mlflow.entities import Metric

        client = self.client
        now = _millis()
        history = json.loads(run.history_path.read_text()) if run.history_path.exists() else []
        wanted = [(_key(k), float(v), int(entry.get("step", 0))) for entry in history
                  for k, v in history_points(entry).items()]
        logged = {key: {(m.step, m.value) for m in client.get_metric_history(run_id, key)}
                  for key in {key for key, _, _ in wanted}}
        points = [Metric(key, value, now, step) for key, value, step in wanted if (step, value) not in logged[key]]
        metrics = run.metrics()
        for split in ("train", "validation", "test"):
            points += [Metric(_key(f"{split}_{k}"), float(v), now, 0)
                       for k, v in scalar_metrics(metrics.get(split) or {}).items()]
        for i in range(0, len(points), BATCH):
            client.log_batch(run_id, metrics=points[i:i + BATCH])
        for name in ARTIFACTS:
            if (run.root / name).exists():
                client.log_artifact(run_id, str(run.root / name))
        if self.log_model and run.model_dir.is_dir():
            client.log_artifacts(run_id, str(run.model_dir), artifact_path="model")
        client.set_terminated(run_id, "FINISHED")

    def end(self, run_id: str, status: str) -> None:
        """Close a run that did not finish (FAILED, KILLED); never hides the run's own error."""
        try:
            self.client.set_terminated(run_id, status)
        except Exception as exc:
            log.warning("could not mark tracker run %s %s: %s", run_id, status, exc)

    def link(self, run_id: str) -> str:
        return link(self.uri, self._experiment_id or "?", run_id)


def history_points(entry: dict) -> dict[str, float]:
    """A history entry's metrics (its step and epoch are where, not what)."""
    return {k: v for k, v in scalar_metrics(entry).items() if k not in ("step", "epoch")}


class LiveLog(EvalWatcher):
    """Each history entry to the tracker as training logs it. A write that fails mid-training warns once
    and stops the live log, not the training: the tracker's finish logs what is missing from history.json."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker, self.run_id, self.failed = tracker, run_id, False

    def on_log(self, step: int, entry: dict) -> None:
        values = {_key(k): v for k, v in history_points(entry).items()}
        if self.failed or not values:
            return
        try:
            self.tracker.log_metrics(self.run_id, values, step)
        except TrackingError as exc:
            self.failed = True
            log.warning("%s; metrics are logged when training ends instead", exc)


class TensorBoardLog(EvalWatcher):
    """`track: {tensorboard: true | FOLDER}`: TensorBoard event files for one run, written through
    torch.utils.tensorboard: the recipe as text, each history entry as scalars at its step (live),
    metrics.json's splits at the last step."""

    def __init__(self, folder: Path, recipe_yaml: str):
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise TrackingError("track.tensorboard: needs the tensorboard package (pip install 'danlu[scale]')")
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        try:
            self.writer = SummaryWriter(log_dir=str(self.folder))
            self.writer.add_text("recipe", "```yaml\n" + recipe_yaml + "\n```", 0)
            self.writer.flush()
        except Exception as exc:  # an OS error from the folder or the event file
            raise TrackingError(f"track.tensorboard: cannot write TensorBoard events to {self.folder}: "
                                f"{str(exc).strip()[:300] or type(exc).__name__}") from None
        self.step = 0

    @classmethod
    def for_recipe(cls, recipe, run: Run) -> TensorBoardLog | None:
        setting = recipe.track.tensorboard if recipe.track is not None else False
        if setting is False:
            return None
        folder = run.root / "tensorboard" if setting is True else Path(setting).expanduser() / run.root.name
        return cls(folder, recipe.to_yaml())

    def on_log(self, step: int, entry: dict) -> None:
        self.step = max(self.step, step)
        for key, value in history_points(entry).items():
            self.writer.add_scalar(_tag(key), float(value), step)

    def finish(self, run: Run) -> None:
        metrics = run.metrics()
        for split in ("train", "validation", "test"):
            for key, value in scalar_metrics(metrics.get(split) or {}).items():
                self.writer.add_scalar(f"{split}/{key}", float(value), self.step)
        self.writer.close()

    def close(self) -> None:
        self.writer.close()


def _tag(key: str) -> str:
    """eval_accuracy -> eval/accuracy, loss -> train/loss: TensorBoard groups the charts by the prefix."""
    return f"eval/{key.removeprefix('eval_')}" if key.startswith("eval_") else f"train/{key}"


def link(uri: str, experiment_id: str, run_id: str) -> str:
    """Where to see a run: its page for a tracking server, else how to open the local store."""
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"mlflow ui --backend-store-uri {uri}  (experiment {experiment_id}, run {run_id})"


def _key(name: str) -> str:
    # MLflow metric names: alphanumerics, _ - . space / only.
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)


def _millis() -> int:
    import time

    return int(time.time() * 1000)
