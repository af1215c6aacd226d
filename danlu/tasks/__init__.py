"""One folder per task; the registry (danlu.registry) says which exist and what each can do.

    base.py        the Task contract every task fulfils
    classifier.py  what class-label tasks share (metrics, JSON, confusion matrices, baselines)
    regressor.py   what number-label tasks share
    <task>/        spec.py (the registry entry, light), task.py (the Task), starter.yaml, and the
                   task's own pieces (pretraining objectives, generation, preprocessing)

Kept free of heavy imports: `danlu.tasks.<task>.spec` is read when a recipe is validated.
"""

from __future__ import annotations

from pathlib import Path


def new_task(name: str, recipe=None):
    """The task `name`, built the one way every task is built (then `setup` to train, or `load`)."""
    from danlu import registry

    spec = registry.get(name)
    return spec.task_type()(spec, recipe)


def make_task(recipe):
    return new_task(recipe.task, recipe)


def load_task(model_dir: Path):
    """(task, model) saved in a model folder: the task is looked up by the name the folder records,
    in the registry; nothing in the folder names code to run."""
    from danlu.tasks.base import read_meta

    task = new_task(read_meta(model_dir)["task"])
    return task, task.load(Path(model_dir))
