from pathlib import Path

import pytest
import yaml

from danlu import registry
from danlu.errors import RecipeError
from danlu.recipe import apply_overrides, load_recipe

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, recipe: dict) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


BASE = {"name": "t", "task": "tabular-classification", "data": {"source": "builtin:iris"}}


def test_minimal_recipe_gets_defaults(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE))
    assert recipe.train.optimizer == "adamw"
    assert recipe.train.precision == "auto"
    assert recipe.quality.on_fail == "stop"


def test_misspelt_key_names_file_path_and_closest_key(tmp_path):
    path = write(tmp_path, {**BASE, "train": {"optimzer": "adam"}})
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "train.optimzer" in msg and "did you mean 'train.optimizer'" in msg


def test_wrong_type_and_choice_are_explained(tmp_path):
    path = write(tmp_path, {**BASE, "train": {"epochs": "many", "optimizer": "lion"}})
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    msg = str(info.value)
    assert "train.epochs" in msg and "valid number" in msg
    assert "train.optimizer" in msg and "'adamw'" in msg


def test_unknown_key_in_data_section_is_caught(tmp_path):
    path = write(tmp_path, {**BASE, "data": {"source": "builtin:iris", "colums": {}}})
    with pytest.raises(RecipeError, match="data.colums.*did you mean 'data.columns'"):
        load_recipe(path)


def test_missing_required_key(tmp_path):
    path = write(tmp_path, {"name": "t", "data": {"source": "builtin:iris"}})
    with pytest.raises(RecipeError, match="task: required key is missing"):
        load_recipe(path)


def test_missing_data_file_names_the_key(tmp_path):
    path = write(tmp_path, {**BASE, "data": {"train": "nowhere/train.csv"}})
    with pytest.raises(RecipeError, match=r"data.train: .*nowhere/train.csv"):
        load_recipe(path)


def test_data_paths_are_relative_to_the_recipe(tmp_path):
    (tmp_path / "d.csv").write_text("a,label\n1,x\n")
    recipe = load_recipe(write(tmp_path, {**BASE, "data": {"source": "d.csv"}}))
    assert recipe.base_dir == tmp_path.resolve()


def test_overrides_set_nested_values_with_yaml_types(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE), ["train.epochs=3", "train.compile=false", "model.hidden=[8, 4]"])
    assert recipe.train.epochs == 3 and recipe.train.compile is False and recipe.model.hidden == [8, 4]


def test_bad_override_is_marked_as_coming_from_the_command_line(tmp_path):
    with pytest.raises(RecipeError, match=r"train.lr \(from the command line\)"):
        load_recipe(write(tmp_path, BASE), ["train.lr=fast"])
    with pytest.raises(RecipeError, match="key=value"):
        apply_overrides({}, ["train.lr"])


def test_invalid_yaml_reports_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: t\ntask: [unclosed\n")
    with pytest.raises(RecipeError, match="line"):
        load_recipe(path)


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(path, datasets_dir):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if any(not (path.parent / p).exists() for p in _derived_paths(raw["data"])):
        # A set made by scripts/make_*.py (under data/, never committed) that this checkout has not made: every
        # key is checked against the schema; only the paths' existence waits for the script.
        from danlu.recipe import recipe_class

        recipe_class(raw["task"]).model_validate(raw)
        return
    load_recipe(path)


def _derived_paths(data: dict) -> list[str]:
    values = [data.get(key) for key in ("source", "train", "validation", "test")]
    return [v for v in values if isinstance(v, str) and v.startswith("../data/")]


@pytest.mark.parametrize("task", registry.names())
def test_every_starter_is_a_valid_recipe_apart_from_its_placeholder_paths(task):
    from danlu.recipe import recipe_class
    from danlu.recipe.starters import starter_text

    text = starter_text(task)
    assert "{{" not in text  # every option list was filled in from the schema
    raw = yaml.safe_load(text)
    recipe = recipe_class(task).model_validate(raw)  # schema only: the starter's data paths are placeholders
    assert recipe.task == task


def test_starter_option_lists_come_from_the_schema():
    from danlu.recipe.starters import starter_text

    text = starter_text("text-classification")
    assert "wordpiece | bpe | char | byte_bpe" in text  # char and byte_bpe exist: the starter says so


# -- reading a recipe never crashes or hangs (issue: hardening) ------------------------------------
def _raises_recipe_error(path, match):
    with pytest.raises(RecipeError, match=match):
        load_recipe(path)


def test_odd_files_are_refused_with_the_file_named(tmp_path):
    import os

    _raises_recipe_error(tmp_path, "is a folder")
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    _raises_recipe_error(tmp_path / "latin1.yaml", "line 1 is not UTF-8")
    (tmp_path / "utf16.yaml").write_text("name: x\n", encoding="utf-16")
    _raises_recipe_error(tmp_path / "utf16.yaml", "UTF-16")
    _raises_recipe_error(Path("/dev/zero"), "not a regular file")
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    _raises_recipe_error(fifo, "not a regular file")  # reading it would block forever
    (tmp_path / "big.yaml").write_bytes(b"#" * (2 << 20))
    _raises_recipe_error(tmp_path / "big.yaml", "a recipe is at most")
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 2000 + "]" * 2000 + "\n")
    _raises_recipe_error(tmp_path / "deep.yaml", "nested too deeply")
    _raises_recipe_error(Path("x" * 5000 + ".yaml"), "cannot read the recipe|not found")


def test_yaml_aliases_and_duplicate_keys_are_refused(tmp_path):
    laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    laughs += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    (tmp_path / "laughs.yaml").write_text("\n".join(laughs) + "\n")
    _raises_recipe_error(tmp_path / "laughs.yaml", "stands for more than")
    (tmp_path / "self.yaml").write_text("a: &a [*a]\n")
    with pytest.raises(RecipeError):  # YAML itself refuses an alias to an anchor not yet complete
        load_recipe(tmp_path / "self.yaml")
    (tmp_path / "twice.yaml").write_text("name: a\ntask: tabular-classification\nname: b\n")
    _raises_recipe_error(tmp_path / "twice.yaml", "key 'name' is given twice")


def test_a_data_path_that_loops_is_an_error_naming_the_key(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(RecipeError, match="data.source"):
        load_recipe(write(tmp_path, {**BASE, "data": {"source": "loop/x.csv"}}))


@pytest.mark.parametrize("override,key", [
    ("train.seed=-1", "train.seed"), ("model.hidden=[-3]", "model.hidden.0"), ("model.hidden=[0]", "model.hidden.0"),
    ("train.epochs=.inf", "train.epochs"), ("train.grad_accum=9223372036854775808", "train.grad_accum"),
    ("train.checkpoint_every=-1", "train.checkpoint_every"), ("train.max_steps=18446744073709551617", "train.max_steps"),
    ("evaluate.metric=acuracy", "evaluate.metric"), ("train.early_stopping={metric: acuracy}", "train.early_stopping.metric"),
    (f"name={'n' * 300}", "name"), ("data.hub={trust_remote_code: true}", "data.hub.trust_remote_code"),
])
def test_values_that_cannot_work_are_refused_with_the_key(tmp_path, override, key):
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, BASE), [override])
    assert f"  - {key} (from the command line)" in str(info.value) or f"  - {key}" in str(info.value)


def test_a_metric_typo_suggests_the_metric(tmp_path):
    with pytest.raises(RecipeError, match="did you mean 'accuracy'"):
        load_recipe(write(tmp_path, BASE), ["evaluate.metric=acuracy"])


NASTY = [-1, 0, 1, 2**64 + 1, -2**63, 1e308, float("inf"), float("nan"), "", "abc", None, [], {}, [0], [-3], True,
         "x" * 300, {"a": {"b": {"c": 1}}}, list(range(200)), "中文", "../../etc/passwd", 0.5, -0.5]
SIZES = [("train", "epochs"), ("train", "batch_size"), ("train", "grad_accum"), ("train", "max_steps"),
         ("train", "eval_batch_size"), ("train", "lr"), ("model", "layers"), ("model", "heads"),
         ("model", "embedding"), ("model", "max_length")]


def _paths(node, prefix=()):
    if isinstance(node, dict):
        yield prefix
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    else:
        yield prefix


def _mutate(raw: dict, rng) -> dict:
    import copy
    import random

    out = copy.deepcopy(raw)
    path = rng.choice([p for p in _paths(out) if p])
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    move = rng.random()
    if move < 0.6:
        parent[path[-1]] = copy.deepcopy(rng.choice(NASTY))
    elif move < 0.75:
        del parent[path[-1]]
    elif move < 0.9:
        value = parent.pop(path[-1])
        name = str(path[-1])
        parent[name[:-1] + random.Random(rng.random()).choice("xyz") if name else "x"] = value
    else:
        section, key = rng.choice(SIZES)
        out.setdefault(section, {})
        if isinstance(out[section], dict):
            out[section][key] = rng.choice([0, -1, -5, 0.0, float("inf")])
    return out


def test_a_seeded_recipe_fuzz_only_ever_loads_or_raises_a_recipe_error():
    import random
    import time

    from danlu.errors import DanluError
    from danlu.recipe import recipe_from_dict
    from danlu.recipe.starters import starter_text

    rng = random.Random(20261201)
    bases = []
    for task in registry.names():
        raw = yaml.safe_load(starter_text(task))
        raw["data"] = {"source": "builtin:iris"}  # the starters' placeholder paths would stop every case early
        bases.append(raw)
    start, loaded, refused = time.perf_counter(), 0, 0
    for case in range(600):
        raw = _mutate(rng.choice(bases), rng)
        try:
            recipe = recipe_from_dict(raw, source=f"case {case}")
        except DanluError:
            refused += 1
            continue
        loaded += 1
        t, m = recipe.train, recipe.model
        assert t.epochs > 0 and t.batch_size >= 1 and t.grad_accum >= 1 and (t.max_steps or 1) >= 1, case
        assert all(w >= 1 for w in (m.hidden or []) + (m.channels or [])) and m.max_length >= 4, case
        assert (m.layers or 1) >= 1 and (m.heads or 1) >= 1 and t.lr > 0, case
    assert loaded > 50 and refused > 200  # both outcomes are exercised
    assert time.perf_counter() - start < 60
