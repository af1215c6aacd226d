"""`danlu tune RECIPE`: a hyperparameter search with Optuna over the recipe's `tune:` space.

Each trial is a danlu run (its own run directory, trained by the pipeline like `danlu train`) judged
on the task's main metric on validation; test is measured once, for the best trial only, so the
search never looks at it.

- Pruning: each evaluation during training is reported to Optuna (an EvalWatcher, which both
  engines call); a trial the median pruner finds clearly worse stops there.
- Storage: an Optuna RDB study, SQLite in the runs folder by default. A database URL lets several
  processes or machines share one study: the same command on each. `--trials N` is the study's total
  of finished trials (complete or pruned), so every process stops once the study has N.
- Resume: a study is found again by its name. A trial left running by a process of this host that
  has died is marked failed and its values are queued again, resuming its run directory's
  checkpoints; trials of other machines are failed by Optuna's heartbeat after its grace period.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

from danlu.errors import DanluError, RecipeError
from danlu.recipe import recipe_from_dict
from danlu.run import Run, atomic_write_bytes, atomic_write_text
from danlu.scale.space import check_space, suggest, values_of, with_values
from danlu.train.fitting import EvalWatcher

log = logging.getLogger("danlu")

HEARTBEAT_S = 60  # a trial whose process stopped beating for GRACE_S is failed and retried by another
GRACE_S = 180
# What SQLite says to the second of two processes creating one new study database at once.
RACES = ("already exists", "UNIQUE constraint failed", "database is locked")


class StorageError(DanluError):
    """The study's database cannot be opened."""


@dataclass
class TuneResult:
    folder: Path
    study: str
    storage: str
    best_recipe: Path
    report: Path
    best: dict  # number, value, params, run, test


def study_folder(runs_root: str | Path, study: str) -> Path:
    return Path(runs_root) / f"tune-{study}"


def open_storage(url: str):
    """Optuna's RDB storage with a heartbeat; one clear error when the database cannot be opened."""
    import optuna

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    if url.startswith("sqlite:///"):
        try:
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"--storage: cannot create the folder of {url}: {exc.strerror or exc}") from None
    # The heartbeat is marked experimental since Optuna 2.9; it is what lets a dead machine's trial be retried.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for attempt in range(4):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                failed_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
        except Exception as exc:  # SQLAlchemy's errors for a bad URL, a missing driver, a refused connection
            # Two processes creating one new database's tables at once: the loser finds them made.
            if any(race in str(exc) for race in RACES) and attempt < 3:
                time.sleep(0.5 * (attempt + 1))
                continue
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise StorageError(f"--storage: cannot open the study database at {url}: {first}") from None


class PruneWatcher(EvalWatcher):
    """Reports the validation metric of each evaluation to the trial; stops it when Optuna prunes."""

    def __init__(self, trial, metric: str):
        self.trial = trial
        self.key = metric if metric.startswith("eval_") else f"eval_{metric}"
        self.pruned_at: int | None = None

    def on_evaluation(self, step: int, metrics: dict) -> bool:
        value = metrics.get(self.key)
        if value is None:
            return False
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            self.pruned_at = step
            return True
        return False


def load_tuning(path: str | Path, overrides=()) -> tuple[dict, object]:
    """The recipe as a tree (overrides applied) and its validated `tune:` section."""
    from danlu.recipe.files import parse_yaml, read_recipe_text
    from danlu.recipe.load import apply_overrides

    path = Path(path)
    raw = apply_overrides(parse_yaml(read_recipe_text(path), str(path)), list(overrides))
    recipe = recipe_from_dict(raw, source=str(path), recipe_path=path)
    if recipe.tune is None:
        raise RecipeError(f"{path}: no tune: section; add one, e.g.\n  tune:\n    space:\n"
                          "      train.lr: {low: 0.0001, high: 0.01, log: true}")
    check_space(raw, recipe.tune.space, str(path))
    return raw, recipe


def tune(path: str | Path, overrides=(), trials: int | None = None, storage: str | None = None,
         study: str | None = None, runs_root: str | Path = "runs", say=None) -> TuneResult:
    import optuna

    say = say or (lambda msg: log.info(msg))
    raw, recipe = load_tuning(path, overrides)
    cfg = recipe.tune
    total = trials or cfg.trials
    name = study or recipe.name
    folder = study_folder(runs_root, name)
    url = storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    metric = recipe.main_metric
    direction = "maximize" if recipe.spec.higher_is_better(metric) else "minimize"
    base = {k: v for k, v in raw.items() if k != "tune"}
    folder.mkdir(parents=True, exist_ok=True)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = open_storage(url)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=cfg.startup, n_warmup_steps=0)
              if cfg.pruner == "median" else optuna.pruners.NopPruner())
    # Processes sharing a study must not draw the same values: each seeds its sampler apart.
    seed = zlib.crc32(f"{cfg.seed}-{socket.gethostname()}-{os.getpid()}".encode())
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.startup, constant_liar=True)
    the_study = _guard_storage(url, optuna.create_study, study_name=name, storage=store, direction=direction,
                               sampler=sampler, pruner=pruner, load_if_exists=True)
    if the_study.direction.name.lower() != direction:
        raise DanluError(f"study '{name}' in {url} was made to {the_study.direction.name.lower()}, but "
                         f"{metric} is to {direction}; choose another --study")
    requeued = _requeue_dead(the_study)
    done = _finished(the_study)
    say(f"study {name}: {len(done)} of {total} trials done" + (f", {requeued} requeued" if requeued else "")
        + f" ({url})")
    parent = _tracker_parent(recipe, runs_root, the_study, name)

    def objective(trial):
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        values = {key: suggest(trial, key, rng) for key, rng in cfg.space.items()}
        run_dir = Path(trial.user_attrs.get("resume_dir") or folder / f"trial-{trial.number}")
        trial.set_user_attr("run", str(run_dir))
        trial_raw = with_values(base, values)
        # Judged on validation alone: the test split is measured once, for the best trial.
        trial_raw = with_values(trial_raw, {"evaluate.splits": ["validation"], "evaluate.baseline": False,
                                            "train.progress": False})
        trial_recipe = recipe_from_dict(trial_raw, source=f"{path} (trial {trial.number})", recipe_path=Path(path))
        say(f"trial {trial.number}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        watcher = PruneWatcher(trial, metric)
        from danlu.pipeline import train as run_training

        run = run_training(trial_recipe, run_dir, runs_root, track_parent=parent, watchers=[watcher])
        value = (run.metrics().get("validation") or {}).get(metric)
        if value is None:
            raise DanluError(f"trial {trial.number}: no validation {metric} in {run.metrics_path}")
        trial.set_user_attr("value", float(value))
        if watcher.pruned_at is not None:
            say(f"trial {trial.number}: pruned at step {watcher.pruned_at} (validation {metric} {value:.4f})")
            raise optuna.TrialPruned()
        say(f"trial {trial.number}: validation {metric} {value:.4f}")
        return float(value)

    left = total - len(done)
    if left > 0:
        stop = optuna.study.MaxTrialsCallback(total, states=(optuna.trial.TrialState.COMPLETE,
                                                             optuna.trial.TrialState.PRUNED))
        the_study.optimize(objective, n_trials=left, callbacks=[stop], catch=())
    return _finish(the_study, base, cfg.space, folder, url, metric, direction, path, say)


def _guard_storage(url: str, action, *args, **kwargs):
    try:
        return action(*args, **kwargs)
    except DanluError:
        raise
    except Exception as exc:
        import sqlalchemy.exc

        if not isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise StorageError(f"--storage: cannot use the study database at {url}: {first}") from None


def _finished(study) -> list:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


def _requeue_dead(study) -> int:
    """Trials left RUNNING by a dead process of this host: failed, and their values queued again."""
    import optuna

    from danlu.run import _alive

    count = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("host") != socket.gethostname() or attrs.get("pid") is None or _alive(attrs["pid"]):
            continue
        if study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
            study.enqueue_trial(trial.params, user_attrs={"resume_dir": attrs.get("run"),
                                                          "retry_of": trial.number})
            count += 1
    return count


def _tracker_parent(recipe, runs_root, study, name: str) -> str | None:
    from danlu.track import Tracker

    tracker = Tracker.for_recipe(recipe, runs_root)
    if tracker is None:
        return None
    parent = study.user_attrs.get("tracker_parent")
    if parent is None:
        parent = tracker.start(f"tune-{name}", {"study": name, **{f"tune.space.{k}": v.model_dump(exclude_none=True)
                                                                 for k, v in recipe.tune.space.items()}})
        study.set_user_attr("tracker_parent", parent)
    return parent


def _finish(study, base: dict, space: dict, folder: Path, url: str, metric: str, direction: str, path,
            say) -> TuneResult:
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise DanluError(f"study {study.study_name}: no trial has completed (all pruned or failed); see "
                         f"{folder}")
    best = study.best_trial
    best_yaml = folder / "best.yaml"
    values = values_of(space, best.params)
    best_recipe = recipe_from_dict(with_values(base, values), source="best.yaml", recipe_path=Path(path))
    atomic_write_text(best_yaml, best_recipe.to_yaml())
    run_dir = Path(best.user_attrs["run"])
    test = test_metrics(run_dir)
    say(f"best: trial {best.number}, validation {metric} {best.value:.4f}" +
        (f", test {metric} {test[metric]:.4f}" if metric in test else ""))
    importances = _importances(study)
    summary = {"number": best.number, "value": best.value, "params": values, "run": str(run_dir),
               "test": test}
    report = folder / "tune_report.md"
    _write_report(report, study, metric, direction, summary, importances, url)
    return TuneResult(folder, study.study_name, url, best_yaml, report, summary)


def test_metrics(run_dir: Path) -> dict:
    """The best trial's saved model on the test split of its recipe (the only look at test)."""
    from danlu.inference import torch_forward
    from danlu.pipeline import check_data
    from danlu.recipe import load_recipe
    from danlu.tasks import load_task

    run = Run(run_dir)
    recipe = load_recipe(run.recipe_path, base_dir=run.state().get("recipe_dir"))
    splits, _, _ = check_data(recipe)
    frame = splits.frames.get("test")
    if frame is None or not len(frame):
        return {}
    task, model = load_task(run.require_model())
    from danlu.evaluate.metrics import scalar_metrics

    return scalar_metrics(task.evaluate(torch_forward(model), task.encode(frame)))


def _importances(study) -> dict:
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2 or len(study.best_trial.params) < 1:
        return {}
    try:
        return optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as exc:  # all values equal, or a single distinct point
        log.info("no parameter importances: %s", exc)
        return {}


def _write_report(path: Path, study, metric: str, direction: str, best: dict, importances: dict, url: str) -> None:
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    keys = sorted({k for t in trials for k in t.params})
    lines = [f"# Tuning: {study.study_name}", "",
             f"Objective: validation {metric} ({direction}); storage `{url}`; {len(trials)} trials.", "",
             f"**Best: trial {best['number']}**, validation {metric} {best['value']:.4f}"
             + (f", test {metric} {best['test'][metric]:.4f} (measured for the best trial only)"
                if metric in best["test"] else "") + f"; its recipe: `best.yaml`; its run: `{best['run']}`.", "",
             "## Trials", "", "| trial | state | " + " | ".join(keys) + f" | validation {metric} | best so far |",
             "|" + "---|" * (len(keys) + 4)]
    running = None
    better = max if direction == "maximize" else min
    for t in trials:
        value = t.value if t.value is not None else t.user_attrs.get("value")
        if t.state.name == "COMPLETE":
            running = t.value if running is None else better(running, t.value)
        cells = [str(t.params.get(k, "")) for k in keys]
        lines.append(f"| {t.number} | {t.state.name.lower()} | " + " | ".join(cells) +
                     f" | {'' if value is None else f'{value:.4f}'} | {'' if running is None else f'{running:.4f}'} |")
    lines += ["", "## Parameter importances (optuna.importance, its default evaluator)", ""]
    if importances:
        lines += ["| parameter | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in importances.items()]
    else:
        lines.append("Not enough completed trials with different values to tell.")
    lines += ["", "## Optimisation history", "", "![history](tune_history.png)", ""]
    _plot_history(path.parent / "tune_history.png", trials, direction, metric)
    atomic_write_text(path, "\n".join(lines))


def _plot_history(path: Path, trials, direction: str, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(t.number, t.value) for t in trials if t.state.name == "COMPLETE"]
    if not points:
        return
    best, running = [], None
    for _, value in points:
        running = value if running is None else (max if direction == "maximize" else min)(running, value)
        best.append(running)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([n for n, _ in points], [v for _, v in points], "o", label="trial")
    ax.step([n for n, _ in points], best, where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())

