"""track: {mlflow: ...}: a run's recipe, metrics and artifacts, read back with MLflow's own client."""

import json

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from danlu.cli import app
from danlu.pipeline import train
from danlu.recipe import recipe_from_dict
from danlu.run import Run
from danlu.track import LiveLog, TrackingError, flatten, tracking_uri
from danlu.train.fitting import EvalWatcher

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


class SeesTheTracker(EvalWatcher):
    """At each log entry, which steps of `loss` and `eval_accuracy` MLflow already holds."""

    def __init__(self, run_root, store):
        self.run_root, self.store, self.seen = run_root, store, []

    def on_log(self, step, entry):
        tracked = Run(self.run_root).state()["tracker"]
        client = MlflowClient(tracking_uri=tracked["uri"])
        held = {k: sorted(m.step for m in client.get_metric_history(tracked["run_id"], k))
                for k in ("loss", "eval_accuracy")}
        self.seen.append((step, sorted(entry), held))


def test_metrics_reach_the_tracker_while_the_run_trains(tmp_path, iris, store):
    iris["train"]["log_every"] = 5
    iris["track"] = {"mlflow": str(store)}
    watcher = SeesTheTracker(tmp_path / "run", store)
    run = train(recipe_from_dict(iris), tmp_path / "run", watchers=[watcher])
    # the watcher hears of an entry just before the tracker does: what MLflow holds then is every earlier entry
    history = json.loads(run.history_path.read_text())
    for i, (step, keys, held) in enumerate(watcher.seen):
        earlier = history[:i]
        assert held["loss"] == sorted(e["step"] for e in earlier if "loss" in e)
        assert held["eval_accuracy"] == sorted(e["step"] for e in earlier if "eval_accuracy" in e)
    assert len(watcher.seen) == len(history) and len(watcher.seen[-1][2]["eval_accuracy"]) == 6
    # and the end adds none twice
    client = MlflowClient(tracking_uri=Run(run.root).state()["tracker"]["uri"])
    losses = client.get_metric_history(Run(run.root).state()["tracker"]["run_id"], "loss")
    assert sorted(m.step for m in losses) == sorted(e["step"] for e in history if "loss" in e)


def test_a_live_write_that_fails_warns_and_the_end_logs_what_is_missing(caplog):
    class Refuses:
        def log_metrics(self, run_id, values, step):
            raise TrackingError("track.mlflow: cannot write the tracker at sqlite:///x: disk I/O error")

    live = LiveLog(Refuses(), "r1")
    live.on_log(1, {"loss": 0.5, "epoch": 0.1, "step": 1})
    live.on_log(2, {"loss": 0.4, "epoch": 0.2, "step": 2})
    assert live.failed and caplog.text.count("disk I/O error") == 1


def test_the_trainer_engine_tells_watchers_of_each_log_entry():
    from types import SimpleNamespace

    from danlu.train.engine import WatcherCallback

    class Hears(EvalWatcher):
        heard = []

        def on_log(self, step, entry):
            self.heard.append((step, entry))

    callback = WatcherCallback([Hears()])
    callback.on_log(None, SimpleNamespace(is_world_process_zero=True, global_step=7), None, logs={"loss": 0.3})
    callback.on_log(None, SimpleNamespace(is_world_process_zero=False, global_step=8), None, logs={"loss": 0.2})
    assert Hears.heard == [(7, {"loss": 0.3})]  # only the main process logs


def test_tensorboard_events_hold_each_step_and_the_final_metrics(tmp_path, iris):
    pytest.importorskip("tensorboard", reason="track.tensorboard needs the tensorboard package (danlu[scale])")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    iris["track"] = {"tensorboard": True}
    run = train(recipe_from_dict(iris), tmp_path / "run")
    events = EventAccumulator(str(run.root / "tensorboard"))
    events.Reload()
    history = json.loads(run.history_path.read_text())
    accuracy = [(s.step, s.value) for s in events.Scalars("eval/accuracy")]
    assert accuracy == [(e["step"], pytest.approx(e["eval_accuracy"])) for e in history if "eval_accuracy" in e]
    assert [s.step for s in events.Scalars("train/loss")] == [e["step"] for e in history if "loss" in e]
    metrics = json.loads(run.metrics_path.read_text())
    assert events.Scalars("test/accuracy")[0].value == pytest.approx(metrics["test"]["accuracy"])
    assert "recipe/text_summary" in events.Tags()["tensors"]  # the recipe, as text


def test_a_tensorboard_folder_that_cannot_be_written_stops_the_run(tmp_path, iris):
    pytest.importorskip("tensorboard", reason="track.tensorboard needs the tensorboard package (danlu[scale])")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    iris["track"] = {"tensorboard": str(blocker / "boards")}
    clean_failure(["train", write_recipe(tmp_path, iris), "-o", tmp_path / "run"],
                  "track.tensorboard: cannot write TensorBoard events to")
