"""`danlu eval RUN --data FILE`: a finished run's metrics on new labelled data."""

from __future__ import annotations

from pathlib import Path

from danlu.inference import torch_forward
from danlu.run import Run, atomic_write_json


def evaluate_run(run_dir: str | Path, data_file: str | Path) -> dict:
    """Metrics of a finished run on new labelled data, read with the run's own column mapping."""
    from danlu.data import load_frame
    from danlu.recipe import load_recipe
    from danlu.tasks import load_task

    run = Run(run_dir)
    model_dir = run.require_model()
    recipe = load_recipe(run.recipe_path, base_dir=run.state().get("recipe_dir"))
    task, model = load_task(model_dir)
    frame = load_frame(str(data_file), recipe.data, list(task.spec.roles), Path.cwd())
    metrics = task.evaluate(torch_forward(model), task.encode(frame))
    atomic_write_json(run.eval_path(Path(data_file).stem), metrics)
    return metrics
