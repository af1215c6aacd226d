"""The stages of a run, in order: check data -> features -> train -> evaluate -> save -> report.

`train()` is what `danlu train RECIPE` does. Each stage is a small function; the run directory
records its state so that the same command on an interrupted run picks up where it stopped.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import set_seed

from danlu.data import check_quality, enforce, kfold_indices, load_splits, save_report
from danlu.errors import RunError
from danlu.evaluate.metrics import MAIN_METRIC, greater_is_better, summarize_folds
from danlu.models import count_parameters
from danlu.recipe import Recipe, task_kind
from danlu.report import write_report
from danlu.run import Run, atomic_write_json, atomic_write_text, read_json, save_atomically
from danlu.tasks import make_task, predict_logits
from danlu.train.engine import fit, silence_transformers
from danlu.train.plan import plan_training
from danlu.train.pretrain_stage import pretrain_stage, summary

log = logging.getLogger("danlu")


def recipe_hash(recipe: Recipe) -> str:
    return hashlib.sha256(recipe.to_yaml().encode()).hexdigest()[:16]


def open_run(recipe: Recipe, out_dir: str | Path | None, runs_root: str | Path = "runs") -> tuple[Run, bool]:
    """The run directory to use and whether it resumes an interrupted run of the same recipe."""
    digest = recipe_hash(recipe)
    if out_dir is not None:
        run = Run(out_dir)
        state = run.state()
        if state.get("status") == "done":
            raise RunError(f"{run.root} already holds a finished run; choose another -o or remove it")
        if state and state.get("recipe_hash") != digest:
            raise RunError(f"{run.root} holds an unfinished run of a different recipe; choose another -o "
                           "or remove it")
        return run, bool(state)
    root = Path(runs_root)
    unfinished = sorted(
        (p for p in root.glob(f"{recipe.name}-*") if p.is_dir()
         and Run(p).state().get("status") in ("running", "failed")
         and Run(p).state().get("recipe_hash") == digest),
        key=lambda p: p.name,
    )
    if unfinished:
        return Run(unfinished[-1]), True
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{recipe.name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{recipe.name}-{stamp}-{n}"
    return Run(path), False


def check_data(recipe: Recipe, run: Run | None = None):
    """Load the splits and run the quality gate; stops (DataError) when the gate fails with on_fail: stop."""
    task = make_task(recipe)
    splits = load_splits(recipe.data, list(task.roles), recipe.base_dir, seed=recipe.data.split.seed,
                         classification=task_kind(recipe) == "classification")
    report = check_quality(splits, recipe.quality, list(task.roles), task_kind(recipe) == "classification")
    if run is not None:
        save_report(report, run.root)
    warnings = enforce(report, recipe.quality.on_fail)
    return splits, report, warnings or []


def main_metric(recipe: Recipe) -> str:
    # A language model is measured by its loss per token (perplexity is its exponential).
    return recipe.evaluate.metric or MAIN_METRIC.get(task_kind(recipe), "loss")


def train(recipe: Recipe, out_dir: str | Path | None = None, runs_root: str | Path = "runs",
          on_stage=None) -> Run:
    silence_transformers()
    say = on_stage or (lambda msg: log.info(msg))
    run, resuming = open_run(recipe, out_dir, runs_root)
    run.root.mkdir(parents=True, exist_ok=True)
    say(f"{'resuming' if resuming else 'run'}: {run.root}")
    atomic_write_text(run.recipe_path, recipe.to_yaml())
    run.set_state(status="running", recipe_hash=recipe_hash(recipe), name=recipe.name, task=recipe.task,
                  main_metric=main_metric(recipe),
                  recipe_dir=str(recipe.base_dir) if recipe.base_dir else None)
    try:
        _train_stages(recipe, run, say)
    except Exception as exc:
        # A failed or interrupted run (Ctrl-C leaves it "running") resumes with the same command.
        run.set_state(status="failed", error=str(exc)[:500])
        raise
    run.set_state(status="done", error=None)
    return run


def _train_stages(recipe: Recipe, run: Run, say) -> None:
    say("check data")
    splits, quality, warnings = check_data(recipe, run)
    frames = splits.frames
    metric = main_metric(recipe)

    shipped = recipe  # as written: the report shows this one, not the one pointing at RUN/pretrain
    recipe, pretrained = pretrain_stage(recipe, frames["train"], run.root, say)

    cv = None
    if recipe.evaluate.cross_validation:
        say(f"cross-validation: {recipe.evaluate.cross_validation} folds")
        cv = cross_validate(recipe, splits, run)

    say("features")
    task = make_task(recipe)
    task.setup(frames["train"], splits.features, splits.categorical)
    set_seed(recipe.train.seed)  # Trainer seeds only after the model exists: seed its initial weights too
    model = task.build_model()
    data = encode_splits(task, frames)
    plan = plan_training(recipe, task, model, frames["train"], data["train"])
    total, trainable = count_parameters(plan.model)
    say(f"train: {task.name}, {type(model).__name__}, {total:,} parameters ({trainable:,} trained), "
        f"{len(plan.train_ds):,} examples")

    result = _fit(recipe, task, plan, data.get("validation"), run.checkpoints, run.history_path, metric,
                  _label_ids(task, frames["train"]))
    model = plan.finish(result.model)

    say("evaluate")
    metrics = {}
    for name in recipe.evaluate.splits:
        if name in data:
            metrics[name] = split_metrics(task, model, data[name])
    if cv:
        metrics["cross_validation"] = cv
    samples = None
    if recipe.task == "causal-lm" and recipe.generate.samples:
        from danlu.generate import report_samples

        say("generate samples")
        samples, structure = report_samples(model, task.tokenizer, recipe.generate, frames["train"]["text"])
        if structure:
            metrics["generation"] = structure
    atomic_write_json(run.metrics_path, metrics)

    say("save model")
    _save_model(task, model, run.model_dir)

    say("report")
    info = {
        "name": recipe.name, "task": recipe.task, "status": "done", "main_metric": metric,
        "created": time.strftime("%Y-%m-%d %H:%M"),
        "metrics": {k: v for k, v in metrics.items() if k != "cross_validation"},
        "history": result.history, "data_report_md": quality.to_markdown(), "cross_validation": cv,
        "model": {"arch": _describe(model), "parameters": total, "trainable": trainable,
                  "source": _source(recipe, pretrained)},
        "pretrain": summary(pretrained), "adaptations": plan.notes,
        "pretrain_history": _read_history(run.root / "pretrain" / "history.json") if pretrained else None,
        "training": {"seconds": f"{result.seconds:.1f}", "epochs": f"{result.epochs:g}", "steps": result.steps,
                     "precision": result.precision, "compile": result.compiled,
                     "resumed_from": result.resumed_from, "optimizer": recipe.train.optimizer,
                     "lr": f"{recipe.train.lr:g}", "batch_size": recipe.train.batch_size},
        "recipe_yaml": shipped.to_yaml(), "notes": warnings, "samples": samples,
    }
    write_report(run.root, info)


def encode_splits(task, frames: dict) -> dict:
    # A task may read its training split differently (causal-lm: random windows, not fixed blocks).
    encode_train = getattr(task, "encode_train", task.encode)
    return {name: (encode_train if name == "train" else task.encode)(frame)
            for name, frame in frames.items() if len(frame)}


def split_metrics(task, model, dataset) -> dict:
    """The task's metrics on one encoded split; a task with its own `evaluate` (causal-lm) measures
    itself without gathering every logit."""
    if hasattr(task, "evaluate"):
        return task.evaluate(model, dataset)
    logits, labels = predict_logits(model, dataset, task.collate)
    return task.metrics(logits, labels)


def _label_ids(task, frame) -> np.ndarray:
    return task.label_ids(frame["label"]) if "label" in frame else np.zeros(0, dtype=np.int64)


def _describe(model) -> str:
    arch = getattr(model.config, "arch", None)  # the classic nets say which they are
    return f"{arch} ({type(model).__name__})" if arch else type(model).__name__


def _read_history(path: Path) -> list:
    return read_json(path) if path.exists() else []


def _source(recipe: Recipe, pretrained: dict | None) -> str:
    if pretrained:
        return f"pretrained in this run ({pretrained.get('objective', 'mlm')}, {pretrained.get('steps')} steps)"
    return recipe.model.from_ or "built from a config (random initialisation)"


def _fit(recipe, task, plan, eval_ds, checkpoints: Path, history: Path, metric: str, ids: np.ndarray):
    cfg = recipe.train
    class_weights = sample_weights = None
    if task.kind == "classification" and cfg.imbalance != "none":
        counts = np.bincount(ids, minlength=len(task.labels)).astype(np.float64)
        per_class = len(ids) / (len(task.labels) * np.maximum(counts, 1))
        if cfg.imbalance == "class_weights":
            class_weights = per_class
        else:
            sample_weights = per_class[ids]
    es_metric = (cfg.early_stopping.metric if cfg.early_stopping and cfg.early_stopping.metric else metric)
    return fit(plan.model, plan.train_ds, eval_ds, plan.collate, cfg, checkpoints, history,
               compute_metrics=task.trainer_metrics, metric=es_metric,
               greater_is_better=greater_is_better(es_metric), large_model=task.large_model,
               class_weights=class_weights, sample_weights=sample_weights,
               group_by_length=task.group_by_length, callbacks=plan.callbacks, distill=plan.distill)


def _save_model(task, model, model_dir: Path) -> None:
    save_atomically(model_dir, lambda tmp: task.save(model, tmp))


def cross_validate(recipe: Recipe, splits, run: Run) -> dict:
    """k-fold over train+validation (the test split stays untouched); a finished fold is not redone."""
    pool = pd.concat([f for n, f in splits.frames.items() if n in ("train", "validation")], ignore_index=True)
    k = recipe.evaluate.cross_validation
    folds = kfold_indices(pool["label"].to_numpy(), k, recipe.data.split.seed,
                          stratify=task_kind(recipe) == "classification")
    results = []
    for i, (train_idx, test_idx) in enumerate(folds):
        fold_dir = run.root / "cv" / f"fold-{i + 1}"
        done = fold_dir / "metrics.json"
        if done.exists():
            results.append(read_json(done))
            continue
        task = make_task(recipe)
        train_frame, test_frame = pool.iloc[train_idx], pool.iloc[test_idx]
        task.setup(train_frame, splits.features, splits.categorical)
        set_seed(recipe.train.seed)
        plan = plan_training(recipe, task, task.build_model(), train_frame, task.encode(train_frame))
        # Folds train for the recipe's fixed budget: no validation split, so no early stopping.
        fold_recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update={"early_stopping": None})})
        result = _fit(fold_recipe, task, plan, None, fold_dir / "checkpoints",
                      fold_dir / "history.json", main_metric(recipe), task.label_ids(train_frame["label"]))
        logits, labels = predict_logits(plan.finish(result.model), task.encode(test_frame), task.collate)
        fold_metrics = task.metrics(logits, labels)
        atomic_write_json(done, fold_metrics)
        results.append(fold_metrics)
    return summarize_folds(results)


def evaluate_run(run_dir: str | Path, data_file: str | Path) -> dict:
    """Metrics of a finished run on new labelled data, read with the run's own column mapping."""
    from danlu.data import load_frame
    from danlu.recipe import load_recipe
    from danlu.tasks import load_task

    run = Run(run_dir)
    model_dir = run.require_model()
    recipe = load_recipe(run.recipe_path, base_dir=run.state().get("recipe_dir"))
    task, model = load_task(model_dir)
    frame = load_frame(str(data_file), recipe.data, list(task.roles), Path.cwd())
    metrics = split_metrics(task, model, task.encode(frame))
    atomic_write_json(run.root / f"eval-{Path(data_file).stem}.json", metrics)
    return metrics
