"""Tabular work for industry: decisions at a chosen threshold, costs, the rare class's metrics, the
gradient-boosted-trees baseline, column checks, and the templates (danlu init --template)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from danlu.cli import app
from danlu.data.columns import column_rules
from danlu.errors import DataError, RecipeError
from danlu.pipeline import train
from danlu.predict import predict_input
from danlu.recipe import load_recipe, recipe_from_dict
from danlu.tasks import decision
from danlu.templates.maintenance_data import make

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = sorted((REPO / "recipes" / "industry").glob("*.yaml"))


def test_threshold_choices():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])
    truth = np.array([1, 1, 0, 1, 0, 1, 0, 0], dtype=bool)
    assert decision.choose(scores, truth, "recall", recall=0.5) == 0.8  # the highest threshold reaching it
    assert decision.choose(scores, truth, "recall", recall=1.0) == 0.3
    assert decision.choose(scores, truth, "f1") == 0.3  # all 4 found, 2 false alarms: F1 0.8 (at 0.6: 0.75)
    # A missed rare case costs 10 false alarms: take every case down to the lowest rare score.
    assert decision.choose(scores, truth, "cost", costs=(1.0, 10.0)) == 0.3
    with pytest.raises(DataError, match="no example of the rare class"):
        decision.choose(scores, np.zeros(8, bool), "f1")


def test_column_checks_name_id_like_constant_and_leaking_columns():
    rng = np.random.default_rng(0)
    n = 200
    label = rng.choice(["yes", "no"], n)
    train = pd.DataFrame({"customer_id": np.arange(n) + 1000, "country": ["fr"] * n,
                          "closed_account": (label == "yes").astype(int) * 3 + rng.integers(0, 2, n),
                          "income": rng.normal(50, 10, n), "label": label})
    rules, notes = column_rules(train, ["customer_id", "country", "closed_account", "income"], ["country"], True,
                                0.99)
    found = {r.name: r for r in rules}
    assert not found["id_like"].passed and "'customer_id'" in found["id_like"].message
    assert not found["label_leak"].passed and "'closed_account'" in found["label_leak"].message
    assert "'income'" not in found["label_leak"].message
    assert any("'country'" in note and "carry nothing" in note for note in notes)


def test_decision_settings_are_checked_at_load():
    base = {"name": "t", "task": "tabular-classification", "data": {"source": "builtin:iris"}}
    with pytest.raises(RecipeError, match="evaluate.threshold.recall: choose: recall needs"):
        recipe_from_dict({**base, "evaluate": {"threshold": {"choose": "recall"}}})
    with pytest.raises(RecipeError, match="evaluate.costs: threshold choose: cost needs"):
        recipe_from_dict({**base, "evaluate": {"threshold": {"choose": "cost"}}})
    with pytest.raises(RecipeError, match="for classification tasks, not tabular-regression"):
        recipe_from_dict({**base, "task": "tabular-regression", "evaluate": {"threshold": {"choose": "f1"}}})
    with pytest.raises(RecipeError, match="evaluate.costs"):
        recipe_from_dict({**base, "evaluate": {"costs": {"a": {"b": -1}}}})


@pytest.fixture(scope="module")
def maintenance_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maintenance")
    make(rows=3000, seed=0).to_csv(folder / "maintenance.csv", index=False)
    recipe = load_recipe(REPO / "recipes" / "industry" / "predictive_maintenance.yaml",
                         [f"data.source={folder / 'maintenance.csv'}", "train.epochs=15"])
    return train(recipe, folder / "run").root


def test_a_rare_failure_gets_pr_auc_and_a_threshold_that_reaches_the_recall_target(maintenance_run):
    frame = make(rows=3000, seed=0)
    assert frame["failure"].mean() <= 0.05  # the rare-class table: at most 5% positive
    metrics = json.loads((maintenance_run / "metrics.json").read_text())
    chosen = metrics["decision"]
    assert str(chosen["class"]) == "1" and 0 < chosen["threshold"] < 1 and "validation" in chosen["chosen_by"]
    assert metrics["validation"]["recall_rare"] >= 0.8  # the recall the recipe asked for, on validation
    for split in ("validation", "test"):
        assert {"pr_auc", "precision_rare", "recall_rare", "f1_rare"} <= set(metrics[split])
    assert "boosted_trees" in metrics["baselines"]["test"]
    report = (maintenance_run / "report.md").read_text()
    assert "pr_auc (main)" in report and "decision: predict 1 when its probability" in report
    # predict applies the stored threshold: the model's rows above it are called failures.
    model_meta = json.loads((maintenance_run / "model" / "danlu.json").read_text())
    assert model_meta["decision"]["threshold"] == chosen["threshold"]
    rows = frame.drop(columns=["failure"]).head(300)
    rows.to_csv(maintenance_run.parent / "rows.csv", index=False)
    lines = list(predict_input(maintenance_run, str(maintenance_run.parent / "rows.csv")))
    t = chosen["threshold"]
    assert all((line["label"] == 1) == (line["scores"]["1"] >= t) for line in lines)


def test_credit_risk_template_reports_costs_and_the_boosted_trees_baseline(datasets_dir, tmp_path):
    recipe = load_recipe(REPO / "recipes" / "industry" / "credit_risk.yaml")
    run = train(recipe, tmp_path / "run").root
    metrics = json.loads((run / "metrics.json").read_text())
    assert "cost" in metrics["test"] and metrics["decision"]["chosen_by"] == "the least cost on validation"
    trees = metrics["baselines"]["test"]["boosted_trees"]
    assert 0.5 < trees["roc_auc"] <= 1 and "cost" not in trees  # baselines decide by the most probable class
    assert "boosted_trees (gradient-boosted trees" in (run / "report.md").read_text()


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_template_is_a_valid_recipe(path, datasets_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make(rows=100).to_csv(tmp_path / "maintenance.csv", index=False)  # the file the maintenance one expects
    recipe = load_recipe(path)
    assert recipe.name and yaml.safe_load(path.read_text())["task"] == recipe.task


def test_init_writes_a_template(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["init", "--template", "credit_risk"])
    assert result.exit_code == 0, result.output
    assert "threshold: {choose: cost}" in Path("credit_risk.yaml").read_text()
    result = runner.invoke(app, ["init", "--template", "credit-risk"])
    assert result.exit_code == 1 and "did you mean 'credit_risk'" in result.output
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 1 and "give a task" in result.output
