"""Loading a recipe: read the file, apply `key=value` overrides, validate against the task's schema,
fill the task's defaults, then run the cross-field rules.

A mistake is reported with the file, the key path (`train.optimizer`), what was expected and, for a
misspelt key, the closest valid one. All problems found by one step are reported together.
"""

from __future__ import annotations

import copy
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from danlu.errors import DanluError, RecipeError
from danlu.recipe.checks import problems
from danlu.recipe.files import check_shape, parse_yaml, read_recipe_text
from danlu.recipe.schema import Recipe, recipe_class


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                base_dir: str | Path | None = None) -> Recipe:
    """`base_dir`: the folder relative paths refer to, when not the recipe's own (a run's copy)."""
    path = Path(path)
    raw = parse_yaml(read_recipe_text(path), str(path))
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping (name:, task:, data: ...), got {type(raw).__name__}")
    anchor = Path(base_dir) / path.name if base_dir else path
    return recipe_from_dict(raw, source=str(path), overrides=overrides, recipe_path=anchor)


def recipe_from_dict(raw: dict, source: str = "<recipe>", overrides: list[str] | tuple[str, ...] = (),
                     recipe_path: Path | None = None) -> Recipe:
    check_shape(raw, source)
    raw = apply_overrides(raw, overrides)
    override_keys = {item.split("=", 1)[0].strip() for item in overrides}
    schema = _schema_for(raw.get("task"), source, override_keys)
    try:
        recipe = schema.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(_explain(exc, schema, source, override_keys)) from None
    recipe._path = recipe_path.resolve() if recipe_path else None
    spec = recipe.spec
    if spec.defaults is not None:
        spec.defaults(recipe)
    found = problems(recipe)
    if found:
        raise RecipeError(_listing(source, found, override_keys))
    return recipe


def _schema_for(task: Any, source: str, override_keys: set[str]) -> type[Recipe]:
    if not isinstance(task, str):
        return Recipe  # validation then reports the missing or mistyped `task:` with everything else
    try:
        return recipe_class(task)
    except DanluError as exc:
        raise RecipeError(_listing(source, {"task": [str(exc)]}, override_keys)) from None


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """`train.epochs=3` sets raw["train"]["epochs"] = 3 (values parsed as YAML). The recipe itself is
    not changed; without overrides it is returned as it is."""
    if not overrides:
        return raw
    result = copy.deepcopy(raw)  # the tree was checked for alias bombs by check_shape
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override '{item}' is not of the form key=value (e.g. train.epochs=3)")
        key, value = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise RecipeError(f"override '{item}' has an empty key")
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        check_shape(parsed, f"override '{key}'")
        node[parts[-1]] = parsed
    return result


def _listing(source: str, found: dict[str, list[str]], override_keys: set[str]) -> str:
    count = len(found)
    lines = [f"{source}: the recipe is invalid ({count} problem{'s' if count > 1 else ''}):"]
    for key, messages in found.items():
        origin = " (from the command line)" if key in override_keys else ""
        lines.append(f"  - {key}{origin}: {' or '.join(dict.fromkeys(messages))}")
    return "\n".join(lines)


def _explain(exc: ValidationError, schema: type[BaseModel], source: str, override_keys: set[str]) -> str:
    found: dict[str, list[str]] = {}  # key -> messages; a union gives one message per member
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not _is_union_tag(p)]
        key = ".".join(loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            valid = _valid_keys(schema, loc[:-1])
            close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
            hint = f"; did you mean '{'.'.join(loc[:-1] + [close[0]])}'?" if close else ""
            message = f"unknown key{hint} Valid keys here: {', '.join(valid)}"
        elif kind == "missing":
            message = "required key is missing"
        else:
            message = err["msg"]
            got = err.get("input")
            if not isinstance(got, (dict, list)):
                shown = repr(got)
                message += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
        found.setdefault(key, []).append(message)
    return _listing(source, found, override_keys)


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the union member's type name in the loc of union errors ("int", "literal['epoch']").
    return isinstance(part, str) and (part in {"int", "float", "str", "bool", "list[str]", "dict[str,str]"}
                                      or part.startswith(("literal[", "function-", "list[", "dict[", "constrained-")))


def _valid_keys(schema: type[BaseModel], loc: list[str]) -> list[str]:
    model: Any = schema
    for part in loc:
        model = _field_model(model, part)
        if model is None:
            return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _field_model(model: Any, name: str) -> Any:
    fields = {(f.alias or n): f for n, f in model.model_fields.items()} | dict(model.model_fields)
    field = fields.get(name)
    if field is None:
        return None
    candidates = [field.annotation]
    while candidates:
        ann = candidates.pop()
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return ann
        if typing.get_origin(ann) in (Union, types.UnionType):
            candidates.extend(typing.get_args(ann))
    return None

