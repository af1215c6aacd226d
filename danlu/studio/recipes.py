"""Recipes side by side: each run's resolved recipe.yaml flattened to dotted keys, and the keys where the
runs differ. A run's recipe is the resolved one (defaults filled in), so a key one recipe never wrote
still has its value, and only real differences show."""

from __future__ import annotations

import yaml

from danlu.run import Run

MISSING = "–"  # a key one run's recipe does not have (another task's section)


def recipe(run: Run) -> dict:
    try:
        found = yaml.safe_load(run.recipe_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return found if isinstance(found, dict) else {}


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    """{"train.lr": "0.002", ...}; lists and scalars are leaves, shown as YAML flow text."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
    return out


def differences(runs: dict[str, Run]) -> list[tuple[str, list[str]]]:
    """[(key, [value per run])] for the keys whose values are not all the same, in recipe order."""
    flat = {name: flatten(recipe(run)) for name, run in runs.items()}
    keys = list(dict.fromkeys(k for values in flat.values() for k in values))
    rows = []
    for key in keys:
        values = [flat[name].get(key, MISSING) for name in runs]
        if len(set(values)) > 1:
            rows.append((key, values))
    return rows


def budget(run: Run) -> dict:
    """The training budget the recipe set (train.max_steps, train.epochs), for a run's share done."""
    train = recipe(run).get("train") or {}
    return {key: train[key] for key in ("max_steps", "epochs")
            if isinstance(train.get(key), (int, float)) and train[key] > 0}
