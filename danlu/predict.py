"""Using a finished run: predictions for a string, an image path or a file of rows, and generated text.

Both go through the task the run's model folder names (looked up in the registry) and the one
inference path; the serving variant of `danlu match` is not used here (`danlu serve` serves it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pandas as pd

from danlu.errors import DanluError
from danlu.inference import torch_forward
from danlu.run import Run
from danlu.tasks import load_task
from danlu.train import silence_transformers

SHOWN_INPUTS = ("text", "image")  # echoed beside each prediction, so a line says what it is about


def predict_input(run_dir: str | Path, value: str, batch_size: int = 64) -> Iterator[dict]:
    silence_transformers()  # stdout and stderr carry the predictions and errors, no weight-loading bars
    run = Run(run_dir)
    task, model = load_task(run.require_model())
    frame = _rows(run, task, value)
    predictions = task.predict(torch_forward(model), frame, batch_size)
    if task.frame_is_one_input:  # one answer for the whole frame (a forecast from a history): no row to echo
        yield from predictions
        return
    for (_, row), pred in zip(frame.iterrows(), predictions):
        shown = {}
        if "_row" in frame.columns:
            shown["row"] = int(row["_row"])
        for role in SHOWN_INPUTS:
            if role in frame.columns and isinstance(row[role], str):
                shown[role] = row[role]
        yield {**shown, **pred}


def _rows(run: Run, task, value: str) -> pd.DataFrame:
    path = Path(value)
    looks_like_rows = path.suffix.lower() in (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt", ".gz")
    try:
        is_file = path.is_file()
    except OSError:  # a name too long for the file system is a string, not a file
        is_file = False
    if is_file and looks_like_rows:
        from danlu.data import load_frame
        from danlu.recipe import load_recipe

        recipe = load_recipe(run.recipe_path, base_dir=run.state().get("recipe_dir"))
        frame = load_frame(str(path), recipe.data, list(task.spec.input_roles), Path.cwd())
        return frame.drop(columns=["label"], errors="ignore")
    return task.frame_from_value(value)


def generate_text(run_dir: str | Path, prompt: str = "", stream: bool = True, **options) -> Iterator[str]:
    """The continuation of `prompt` from a run whose task writes text, in pieces as they are sampled
    (stream=True) or as one string."""
    from danlu import registry
    from danlu.tasks.base import read_meta

    path = Path(run_dir)
    model_dir = path if (path / "danlu.json").exists() else Run(path).require_model()
    name = read_meta(model_dir)["task"]
    if not registry.get(name).capabilities.generate:  # asked before loading a model that cannot write
        raise DanluError(f"{run_dir} is a {name} run; generate needs a run whose task writes text")
    task, model = load_task(model_dir)
    pieces = task.generate(model, prompt, **options)
    if stream:
        yield from pieces
    else:
        yield "".join(pieces)
