"""Predictions from a finished run: a string, an image path, or a file of rows -> JSON objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pandas as pd

from danlu.errors import DanluError
from danlu.run import Run
from danlu.tasks import load_task, predict_logits

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def predict_input(run_dir: str | Path, value: str, batch_size: int = 64) -> Iterator[dict]:
    run = Run(run_dir)
    task, model = load_task(run.require_model())
    frame = _rows(run, task, value)
    logits, _ = predict_logits(model, task.encode(frame), task.collate, batch_size)
    for (_, row), pred in zip(frame.iterrows(), task.to_json(logits)):
        shown = {}
        if "_row" in frame.columns:
            shown["row"] = int(row["_row"])
        if "text" in frame.columns:
            shown["text"] = row["text"]
        if "image" in frame.columns and isinstance(row["image"], str):
            shown["image"] = row["image"]
        yield {**shown, **pred}


def _rows(run: Run, task, value: str) -> pd.DataFrame:
    path = Path(value)
    roles = list(task.input_roles)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return pd.DataFrame({"image": [str(path)]})
    if path.is_file():
        from danlu.data import load_frame
        from danlu.recipe import load_recipe

        recipe = load_recipe(run.recipe_path, base_dir=run.state().get("recipe_dir"))
        frame = load_frame(str(path), recipe.data, roles, Path.cwd())
        return frame.drop(columns=["label"], errors="ignore")
    if task.name.startswith("tabular"):
        try:
            record = json.loads(value)
        except ValueError:
            raise DanluError("tabular input is a file of rows or a JSON object such as "
                             '\'{"age": 41, "job": "A173"}\'') from None
        return pd.DataFrame(record if isinstance(record, list) else [record])
    if "text" in roles:
        return pd.DataFrame({"text": [value]})
    raise DanluError(f"{value}: no such image or file")
