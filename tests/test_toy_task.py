"""A task registered from tests/ (tests/toytask.py) runs through every stage without touching danlu/:
recipe validation with its own section, check, train, evaluate, baselines, predict, serve, report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import toytask
from danlu import registry
from danlu.errors import RecipeError
from danlu.pipeline import check_data, train
from danlu.predict import predict_input
from danlu.recipe import load_recipe
from danlu.serve.app import ServeSettings, create_app
from danlu.serve.runner import load_runner

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def toy():
    toytask.install()
    yield
    registry.unregister(toytask.NAME)


def write_recipe(folder: Path, **extra) -> Path:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, size=200)
    rows = "\n".join(f"{'x' * n},{'long' if n > 20 else 'short'}" for n in lengths)
    (folder / "lengths.csv").write_text("text,label\n" + rows + "\n")
    recipe = {"name": "toy", "task": toytask.NAME, "data": {"source": "lengths.csv"},
              "quality": {"on_fail": "warn"}, "toy": {"scale": 20},
              "train": {"epochs": 40, "batch_size": 16, "optimizer": "adam", "lr": 0.1, "progress": False}, **extra}
    path = folder / "toy.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def toy_run(toy, tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    recipe = load_recipe(write_recipe(folder))
    return train(recipe, folder / "run").root


def test_the_recipe_has_the_toy_section_and_its_keys_are_checked(toy, tmp_path):
    recipe = load_recipe(write_recipe(tmp_path))
    assert recipe.toy.scale == 20
    with pytest.raises(RecipeError, match=r"toy\.scal: unknown key; did you mean 'toy\.scale'"):
        load_recipe(write_recipe(tmp_path, toy={"scal": 3}))
    with pytest.raises(RecipeError, match="toy.scale"):
        load_recipe(write_recipe(tmp_path, toy={"scale": -1}))
    splits, report, _ = check_data(recipe)
    assert set(splits.frames) == {"train", "validation", "test"}


def test_train_evaluates_against_the_baselines_and_reports(toy_run):
    metrics = json.loads((toy_run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9
    assert set(metrics["baselines"]["test"]) == {"majority", "linear"}
    report = (toy_run / "report.md").read_text()
    assert "## Toy" in report and "## Against the baselines" in report and "plots/confusion_test.png" in report


def test_predict_and_serve_the_toy_model(toy_run):
    (line,) = predict_input(toy_run, "x" * 35)
    assert line["label"] == "long" and line["text"] == "x" * 35

    from fastapi.testclient import TestClient

    with TestClient(create_app(load_runner(toy_run), ServeSettings())) as client:
        reply = client.post("/v1/predict", json={"inputs": ["xx", "x" * 38]})
    assert reply.status_code == 200
    assert [p["label"] for p in reply.json()["predictions"]] == ["short", "long"]


def test_a_module_named_in_the_environment_registers_its_task_for_the_cli(tmp_path):
    env = {**os.environ, "DANLU_TASK_MODULES": "toytask", "PYTHONPATH": str(TESTS)}
    helped = subprocess.run([sys.executable, "-m", "danlu.cli", "init", "--help"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert helped.returncode == 0 and "toy-length" in helped.stdout
    checked = subprocess.run([sys.executable, "-m", "danlu.cli", "check", str(write_recipe(tmp_path))],
                             capture_output=True, text=True, env=env, timeout=300)
    assert checked.returncode == 0, checked.stderr
    assert "data check passed" in checked.stdout
