"""k-fold cross-validation over train+validation (the test split stays untouched); a finished fold
is not redone when the run resumes."""

from __future__ import annotations

import pandas as pd

from danlu.data import kfold_indices
from danlu.evaluate.metrics import summarize_folds
from danlu.inference import TorchForward
from danlu.pipeline.fit import fit_task
from danlu.pipeline.plan import plan_training
from danlu.run import Run, atomic_write_json, read_json
from danlu.tasks import make_task
from danlu.train.fitting import seed_everything


def cross_validate(recipe, splits, run: Run) -> dict:
    pool = pd.concat([f for n, f in splits.frames.items() if n in ("train", "validation")], ignore_index=True)
    k = recipe.evaluate.cross_validation
    folds = kfold_indices(pool["label"].to_numpy(), k, recipe.data.split.seed, stratify=recipe.spec.has_classes)
    # Folds train for the recipe's fixed budget: no validation split, so no early stopping.
    fold_recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update={"early_stopping": None})})
    results = []
    for i, (train_idx, test_idx) in enumerate(folds):
        fold = Run(run.fold_dir(i + 1))  # a fold's checkpoints, history and metrics, laid out as a run's
        done = fold.metrics_path
        if done.exists():
            results.append(read_json(done))
            continue
        task = make_task(recipe)
        train_frame, test_frame = pool.iloc[train_idx], pool.iloc[test_idx]
        task.setup(train_frame, splits.features, splits.categorical)
        seed_everything(recipe.train.seed)
        plan = plan_training(recipe, task, task.build_model(), train_frame, task.encode(train_frame, train=True))
        result = fit_task(fold_recipe, task, plan, None, fold.checkpoints, fold.history_path,
                          recipe.main_metric, train_frame)
        fold_metrics = task.evaluate(TorchForward(plan.finish(result.model)), task.encode(test_frame))
        atomic_write_json(done, fold_metrics)
        results.append(fold_metrics)
    return summarize_folds(results)
