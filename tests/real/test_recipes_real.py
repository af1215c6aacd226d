"""The shipped recipes on the real datasets (../shared/datasets or $DANLU_DATA).

The cheap recipes run exactly as shipped and must reach the figures the project promises; the
expensive ones (SST-2, CIFAR-10) run with a small budget here, to prove the path works end to end;
their full results are recorded in docs/recipes.md.
"""

import json
from pathlib import Path

import pytest

from danlu.pipeline import train
from danlu.recipe import load_recipe

pytestmark = pytest.mark.real
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def run(tmp_path, name, *overrides):
    recipe = load_recipe(RECIPES / name, [*overrides, "train.progress=false"])
    return json.loads(train(recipe, tmp_path / "run").metrics_path.read_text())


def test_mnist_mlp_as_shipped(datasets_dir, tmp_path):
    metrics = run(tmp_path, "mnist_mlp.yaml")
    assert metrics["test"]["n"] == 2000
    assert metrics["test"]["accuracy"] >= 0.95


def test_breast_cancer_as_shipped(datasets_dir, tmp_path):
    metrics = run(tmp_path, "breast_cancer.yaml")
    # As shipped (train.seed 0): CV 0.980, test 0.9649 (110/114). Caveat, see docs/recipes.md: over
    # train.seed 0-9 the test accuracy is 0.947-0.965, i.e. 4 of 10 seeds land one row short of 0.95
    # (two test rows sit at P ~ 0.5), so this bound holds for the shipped seed, not for every seed.
    assert metrics["test"]["n"] == 114
    assert metrics["test"]["accuracy"] >= 0.95
    assert metrics["cross_validation"]["accuracy"]["mean"] >= 0.95


def test_german_credit_cross_validated_roc_auc(datasets_dir, tmp_path):
    metrics = run(tmp_path, "german_credit.yaml")
    cv = metrics["cross_validation"]
    assert len(cv["roc_auc"]["folds"]) == 5
    assert cv["roc_auc"]["mean"] >= 0.75


def test_sst2_from_packaged_minilm_learns_quickly(datasets_dir, tmp_path):
    metrics = run(tmp_path, "sst2_minilm.yaml", "data.limit={train: 1500, test: 300}", "train.eval_every=epoch",
                  "train.checkpoint_every=epoch")
    assert (tmp_path / "run" / "model" / "tokenizer.json").exists()
    assert metrics["validation"]["accuracy"] >= 0.75  # random weights stay near 0.5 with this budget


def test_sst2_transformer_from_scratch_runs(datasets_dir, tmp_path):
    metrics = run(tmp_path, "sst2_transformer.yaml", "data.limit={train: 10000, test: 300}", "train.epochs=1",
                  "train.eval_every=epoch", "train.checkpoint_every=epoch")
    assert metrics["validation"]["accuracy"] > 0.6


def test_cifar10_cnn_runs(datasets_dir, tmp_path):
    metrics = run(tmp_path, "cifar10_cnn.yaml", "train.epochs=2", "data.limit={test: 300}")
    assert metrics["test"]["n"] == 300
    assert metrics["test"]["accuracy"] > 0.15  # 10 classes: chance is 0.10
