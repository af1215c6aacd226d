"""Training a task's model with its engine: seeding, class balancing, early stopping's metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from danlu.errors import DanluError
from danlu.train import fitter
from danlu.train.distributed import world_size



def fit_task(recipe, task, plan, eval_ds, checkpoints: Path, history: Path, metric: str, train_frame,
             watchers=()):
    """Train `plan.model` with the task's engine, the recipe's class balancing and early stopping."""
    cfg = recipe.train
    class_weights = sample_weights = None
    if cfg.imbalance != "none":
        ids = task.label_ids(train_frame["label"])
        counts = np.bincount(ids, minlength=len(task.labels)).astype(np.float64)
        per_class = len(ids) / (len(task.labels) * np.maximum(counts, 1))
        if cfg.imbalance == "class_weights":
            class_weights = per_class
        else:
            sample_weights = per_class[ids]
    es_metric = (cfg.early_stopping.metric if cfg.early_stopping and cfg.early_stopping.metric else metric)
    if recipe.privacy is not None:  # DP-SGD wraps its own optimizer and data loader (Opacus)
        from danlu.trust.privacy import private_fitter

        fit = private_fitter(recipe.privacy)
    else:
        fit = fitter(task.engine)
    if task.engine == "loop" and world_size() > 1:
        raise DanluError(distributed_refusal(task))
    # Only the Trainer engine distributes (on one process a distributed: section changes nothing).
    extra = {"distributed": recipe.distributed} if recipe.distributed is not None and task.engine != "loop" else {}
    return fit(plan.model, plan.train_ds, eval_ds, plan.collate, cfg, checkpoints, history,
               compute_metrics=task.trainer_metrics if task.metrics_in_trainer else None, metric=es_metric,
               greater_is_better=task.spec.higher_is_better(es_metric), large_model=task.large_model,
               class_weights=class_weights, sample_weights=sample_weights,
               group_by_length=task.group_by_length, callbacks=plan.callbacks, distill=plan.distill,
               watchers=watchers, **extra)


def distributed_refusal(task) -> str:
    return (f"--nproc: this {task.name} model trains with danlu's plain loop, on one process; the models "
            "that transformers.Trainer trains (BERT, ViT, GPT and the other transformers) train on many")
