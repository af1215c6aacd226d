"""A task's own sample data and a model trained on it in seconds, for the trust tests."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from danlu import registry
from danlu.recipe import recipe_from_dict
from danlu.tasks import make_task
from danlu.train import fitter


@dataclass
class Trained:
    task: object
    model: object
    train: pd.DataFrame
    test: pd.DataFrame
    features: list
    recipe: object


def trained_sample(name: str, tmp_path, rows: int = 80, seed: int = 0, **recipe_keys) -> Trained:
    spec = registry.get(name)
    sample = spec.make_sample(rows, seed)
    body = {"name": "trust", "task": name, "data": {"source": "builtin:iris"}, **sample.recipe}
    for section, values in recipe_keys.items():
        body[section] = {**body.get(section, {}), **values}
    recipe = recipe_from_dict(body)
    cut = int(rows * 0.75)
    train, test = sample.frame.iloc[:cut].reset_index(drop=True), sample.frame.iloc[cut:].reset_index(drop=True)
    task = make_task(recipe)
    task.setup(train, sample.features, sample.categorical)
    torch.manual_seed(seed)
    model = task.build_model()
    fit = fitter(task.engine)
    model = fit(model, task.encode(train, train=True), None, task.collate, recipe.train, tmp_path / "checkpoints",
                tmp_path / "history.json", compute_metrics=None, metric=None, greater_is_better=True,
                large_model=task.large_model, group_by_length=task.group_by_length).model.eval()
    return Trained(task, model, train, test, list(sample.features), recipe)
