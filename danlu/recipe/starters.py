"""`danlu init TASK`: the task's commented starter recipe, its option lists filled in from the schema.

A starter writes `{{choices:tokenizer.kind}}` where it lists the values a key takes; the list comes
from the task's recipe schema, so a starter never falls behind the code.
"""

from __future__ import annotations

import re
import typing
from importlib import resources

from danlu import registry
from danlu.errors import DanluError
from danlu.recipe.schema import recipe_class

_CHOICES = re.compile(r"\{\{choices:([A-Za-z_.]+)\}\}")


def starter_text(task: str) -> str:
    spec = registry.get(task)
    if not spec.starter:
        raise DanluError(f"task '{task}' has no starter recipe")
    package, _, name = spec.starter.partition(":")
    text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    return _CHOICES.sub(lambda m: " | ".join(choices(recipe_class(task), m.group(1))), text)


def choices(schema, key: str) -> list[str]:
    """The literal values the field at `key` (a dotted path) accepts."""
    model = schema
    parts = key.split(".")
    for part in parts[:-1]:
        model = _section(model.model_fields[part].annotation)
    annotation = model.model_fields[parts[-1]].annotation
    values = [v for arg in _flatten(annotation) if typing.get_origin(arg) is typing.Literal
              for v in typing.get_args(arg)]
    if not values:
        raise DanluError(f"starter: {key} is not a choice of fixed values")
    return [str(v) for v in values]


def _flatten(annotation) -> list:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal or not args:
        return [annotation]
    return [a for arg in args for a in _flatten(arg)]


def _section(annotation):
    from pydantic import BaseModel

    for arg in _flatten(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    raise DanluError(f"starter: {annotation} is not a section")
