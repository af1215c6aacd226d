"""track: {mlflow: ...}: a run's recipe, metrics and artifacts, read back with MLflow's own client."""

import json

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from danlu.cli import app
from danlu.pipeline import train
from danlu.recipe import recipe_from_dict
from danlu.run import Run
from danlu.track import flatten, tracking_uri

from .conftest import clean_failure, write_recipe


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow database for the module: creating one costs seconds."""
    return tmp_path_factory.mktemp("tracking")


def test_a_tracked_run_logs_its_recipe_metrics_and_artifacts(tmp_path, iris, store):
    iris["track"] = {"mlflow": str(store), "log_model": True}
    run = train(recipe_from_dict(iris), tmp_path / "run")

    tracked = Run(run.root).state()["tracker"]
    uri, _ = tracking_uri(str(store), tmp_path)
    assert tracked["uri"] == uri and "mlflow ui" in tracked["link"]
    client = MlflowClient(tracking_uri=uri)
    logged = client.get_run(tracked["run_id"])
    assert logged.info.status == "FINISHED"
    assert client.get_experiment(logged.info.experiment_id).name == "iris"
    params = logged.data.params
    assert params["train.lr"] == "0.01" and params["model.hidden"] == "[16]" and params["task"] == "tabular-classification"

    metrics = json.loads(run.metrics_path.read_text())
    assert logged.data.metrics["test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    history = json.loads(run.history_path.read_text())
    evals = [(e["step"], e["eval_accuracy"]) for e in history if "eval_accuracy" in e]
    per_step = client.get_metric_history(tracked["run_id"], "eval_accuracy")
    assert sorted((m.step, m.value) for m in per_step) == sorted(evals)
    assert len(evals) == 6  # one evaluation per epoch, each its own step

    artifacts = {a.path for a in client.list_artifacts(tracked["run_id"])}
    assert {"report.md", "metrics.json", "history.json", "recipe.yaml", "model"} <= artifacts
    local = client.download_artifacts(tracked["run_id"], "metrics.json", str(tmp_path))
    assert json.loads(open(local).read()) == metrics


def test_a_tracker_that_cannot_be_written_stops_the_run_before_training(tmp_path, iris):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    iris["track"] = {"mlflow": str(blocker / "tracking")}
    clean_failure(["train", write_recipe(tmp_path, iris), "-o", tmp_path / "run"],
                  "track.mlflow: cannot open the tracker at sqlite:///")
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_the_recipe_is_flattened_into_key_paths():
    assert flatten({"train": {"lr": 0.1, "early_stopping": {"patience": 3}}, "name": "x", "data": {}}) == {
        "train.lr": "0.1", "train.early_stopping.patience": "3", "name": "x", "data": "{}"}


def test_runs_shows_a_runs_tracker_link(tmp_path):
    run = Run(tmp_path / "runs" / "r-1")
    run.root.mkdir(parents=True)
    run.set_state(status="done", task="t", tracker={"run_id": "abc", "link": "http://mlflow:5000/#/experiments/1/runs/abc"})
    result = CliRunner().invoke(app, ["runs", "--root", str(tmp_path / "runs"), "--tracker"])
    assert result.exit_code == 0, result.output
    assert "http://mlflow:5000/#/experiments/1/runs/abc" in result.output
    plain = CliRunner().invoke(app, ["runs", "--root", str(tmp_path / "runs")])
    assert "mlflow:5000" not in plain.output


def test_tuning_trials_are_child_runs_of_the_study(tmp_path, iris, store):
    from danlu.scale.tune import tune

    iris["train"]["epochs"] = 2
    iris["track"] = {"mlflow": str(store)}
    iris["tune"] = {"space": {"train.lr": {"low": 0.001, "high": 0.05, "log": True}}, "trials": 2}
    tune(write_recipe(tmp_path, iris), runs_root=tmp_path / "runs")

    client = MlflowClient(tracking_uri=tracking_uri(str(store), tmp_path)[0])
    runs = client.search_runs([client.get_experiment_by_name("iris").experiment_id])
    parents = [r for r in runs if r.info.run_name == "tune-iris"]
    assert len(parents) == 1 and parents[0].data.params["study"] == "iris"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.info.run_name for r in children) == ["trial-0", "trial-1"]
    assert all(r.info.status == "FINISHED" and "validation_accuracy" in r.data.metrics for r in children)
