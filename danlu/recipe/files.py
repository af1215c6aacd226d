"""Reading a recipe file: only a regular, reasonably small UTF-8 YAML file with one meaning.

What is refused, each with a message naming the file: a folder, a FIFO or device (reading would
hang or never end), a file over MAX_BYTES, text that is not UTF-8, duplicate keys (YAML would keep
the last one silently), nesting deeper than MAX_DEPTH, and aliases that refer to themselves or
expand beyond MAX_NODES values (a few hundred bytes of anchors can stand for billions of values).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from danlu.errors import RecipeError

MAX_BYTES = 1 << 20
MAX_DEPTH = 50
MAX_NODES = 100_000


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key '{key}' is given twice (first on line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_recipe_text(path: Path) -> str:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise RecipeError(f"{_short(path)}: recipe file not found") from None
    except OSError as exc:  # a symlink loop, a path too long for the system
        raise RecipeError(f"{_short(path)}: cannot read the recipe: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise RecipeError(f"{_short(path)}: is a folder; give the recipe's .yaml file")
    if not stat.S_ISREG(info.st_mode):
        raise RecipeError(f"{_short(path)}: is not a regular file (a pipe or a device); give the recipe's .yaml file")
    if info.st_size > MAX_BYTES:
        raise RecipeError(f"{_short(path)}: is {info.st_size:,} bytes; a recipe is at most {MAX_BYTES:,}")
    with open(path, "rb") as handle:
        raw = handle.read(MAX_BYTES + 1)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise RecipeError(f"{_short(path)}: is UTF-16 text; save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise RecipeError(f"{_short(path)}: line {line} is not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                          "save the recipe as UTF-8") from None


def parse_yaml(text: str, source: str):
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RecipeError(f"{source}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise RecipeError(f"{source}: is nested too deeply to be a recipe (at most {MAX_DEPTH} levels)") from None
    check_shape(data, source)
    return data


def check_shape(data, source: str) -> None:
    """Refuse self-referencing aliases, deep nesting and alias bombs before anything walks the tree."""
    count = 0
    stack = [(data, 0, ())]
    while stack:
        node, depth, parents = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise RecipeError(f"{source}: stands for more than {MAX_NODES:,} values (YAML aliases expanding "
                              "into each other?); a recipe is much smaller")
        if depth > MAX_DEPTH:
            raise RecipeError(f"{source}: is nested too deeply to be a recipe (at most {MAX_DEPTH} levels)")
        if isinstance(node, (dict, list)):
            if id(node) in parents:
                raise RecipeError(f"{source}: a YAML alias refers to itself")
            children = node.values() if isinstance(node, dict) else node
            inner = parents + (id(node),)
            stack.extend((child, depth + 1, inner) for child in children)


def _short(path: Path) -> str:
    text = os.fspath(path)
    return text if len(text) <= 200 else text[:90] + " … " + text[-90:]
