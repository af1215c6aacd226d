"""One module per task; this maps the recipe's `task:` name to its class."""

from __future__ import annotations

from pathlib import Path

from danlu.tasks.base import Task, predict_logits
from danlu.tasks.causal_lm import CausalLM
from danlu.tasks.image_classification import ImageClassification
from danlu.tasks.tabular import TabularRegression, TabularTask
from danlu.tasks.text_classification import TextClassification

TASKS: dict[str, type[Task]] = {
    "text-classification": TextClassification,
    "image-classification": ImageClassification,
    "tabular-classification": TabularTask,
    "tabular-regression": TabularRegression,
    "causal-lm": CausalLM,
}


def make_task(recipe) -> Task:
    return TASKS[recipe.task](recipe)


def load_task(model_dir: Path):
    """The task and model saved in a run's model directory."""
    meta = Task.read_meta(model_dir)
    return TASKS[meta["task"]].load(Path(model_dir))


__all__ = ["TASKS", "Task", "make_task", "load_task", "predict_logits"]
