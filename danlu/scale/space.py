"""A `tune:` search space: its keys checked against the recipe's schema, and one trial's values
drawn from it and written into a copy of the recipe.

Checked before any trial runs: a range on a key that does not exist, or whose ends the key cannot
take, would otherwise fail trial after trial.
"""

from __future__ import annotations

import copy
import difflib
import json
import typing

from pydantic import BaseModel

from danlu.errors import RecipeError
from danlu.recipe import recipe_from_dict
from danlu.recipe.schema import recipe_class

# What a trial never changes: the search itself, and the splits it is judged on.
NOT_TUNABLE = ("tune", "name", "task", "evaluate.splits")


def check_space(raw: dict, space: dict, source: str) -> None:
    """Every key of `space` is a key of the recipe's schema, and each end of its range (each choice)
    makes a valid recipe; else one RecipeError naming the key."""
    schema = recipe_class(raw["task"])
    for key, rng in space.items():
        where = f"{source}: tune.space.{key}"
        if key.startswith(NOT_TUNABLE):
            raise RecipeError(f"{where}: {key} is not something a trial may change")
        _check_path(schema, key, where)
        if rng.choices is None:
            if rng.low is None or rng.high is None:
                raise RecipeError(f"{where}: give low and high, or choices")
            if rng.low > rng.high:
                raise RecipeError(f"{where}: low ({rng.low}) is above high ({rng.high})")
            if rng.log and rng.low <= 0:
                raise RecipeError(f"{where}: a log scale needs low > 0 (got {rng.low})")
            if rng.log and rng.step is not None:
                raise RecipeError(f"{where}: a log scale takes no step")
        values = rng.choices if rng.choices is not None else [rng.low, rng.high]
        for value in values:
            try:
                recipe_from_dict(with_values(raw, {key: value}), source=source)
            except RecipeError as exc:
                reason = str(exc).split("\n", 1)[-1].strip().removeprefix("- ")
                raise RecipeError(f"{where}: the value {value!r} does not make a valid recipe: {reason}") from None


def _check_path(schema: type[BaseModel], key: str, where: str) -> None:
    model: typing.Any = schema
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        if part not in fields:
            valid = sorted(fields)
            close = difflib.get_close_matches(part, valid, n=1, cutoff=0.5)
            hint = f"; did you mean '{'.'.join(parts[:i] + [close[0]])}'?" if close else ""
            raise RecipeError(f"{where}: '{key}' is not a recipe key{hint} Valid keys here: {', '.join(valid)}")
        if i < len(parts) - 1:
            model = _section(fields[part].annotation)
            if model is None:
                raise RecipeError(f"{where}: '{'.'.join(parts[:i + 1])}' is a value, not a section")


def _section(annotation) -> type[BaseModel] | None:
    candidates = [annotation]
    while candidates:
        ann = candidates.pop()
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return ann
        candidates.extend(typing.get_args(ann))
    return None


def with_values(raw: dict, values: dict) -> dict:
    """A copy of the recipe tree with each `a.b.c` key set (sections created where missing)."""
    tree = copy.deepcopy(raw)
    for key, value in values.items():
        node = tree
        *parents, last = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value
    return tree


def suggest(trial, key: str, rng):
    """One value for `key`, drawn by Optuna's sampler from the range."""
    if rng.choices is not None:
        if any(isinstance(c, list) for c in rng.choices):
            # Optuna's choices are scalars: a list choice is drawn as its JSON text.
            return json.loads(trial.suggest_categorical(key, [json.dumps(c) for c in rng.choices]))
        return trial.suggest_categorical(key, rng.choices)
    if isinstance(rng.low, int) and isinstance(rng.high, int) and not isinstance(rng.step, float):
        return trial.suggest_int(key, rng.low, rng.high, step=rng.step or 1, log=rng.log)
    return trial.suggest_float(key, float(rng.low), float(rng.high), step=rng.step, log=rng.log)


def values_of(space: dict, params: dict) -> dict:
    """A trial's values as the recipe takes them, from Optuna's params (list choices are JSON text)."""
    return {key: json.loads(value) if space[key].choices is not None and any(isinstance(c, list) for c in
                                                                             space[key].choices) else value
            for key, value in params.items() if key in space}
