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
    load_recipe(path)


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
