"""The `danlu` command end to end, on small bundled data: what a user types and what they get."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from danlu.cli import app

runner = CliRunner()

IRIS = {
    "name": "iris", "task": "tabular-classification",
    "data": {"source": "builtin:iris", "split": {"validation": 0.2, "test": 0.2, "seed": 0}},
    "quality": {"max_leakage": 0.05},  # iris holds a few repeated flowers
    "model": {"hidden": [16]},
    "train": {"epochs": 20, "batch_size": 16, "optimizer": "adam", "lr": 0.01, "progress": False},
}


def recipe(tmp_path: Path, body: dict, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body))
    return path


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result, result.output  # click mixes stderr into output


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("iris")
    result, text = invoke("train", recipe(tmp, IRIS), "-o", tmp / "run")
    assert result.exit_code == 0, text
    return tmp / "run", text


def test_train_fills_the_run_directory(iris_run):
    run, text = iris_run
    for name in ("recipe.yaml", "data_report.json", "data_report.md", "metrics.json", "history.json",
                 "report.md", "report.html", "plots/loss.png", "plots/confusion_test.png",
                 "model/config.json", "model/model.safetensors", "state.json"):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"validation", "test", "baselines", "train_mfu", "utilisation"}
    assert metrics["test"]["accuracy"] > 0.8
    assert set(metrics["baselines"]["test"]) == {"majority", "linear", "boosted_trees"}
    assert metrics["baselines"]["test"]["majority"]["accuracy"] < 0.5  # three balanced classes
    assert "baselines on validation (accuracy): majority" in text
    report = (run / "report.md").read_text()
    assert "| encoded width | 4 |" in report and "| features | 4 numeric, 0 categorical |" in report
    assert "| engine | loop |" in report  # the plain loop trains the classic nets
    assert json.loads((run / "state.json").read_text())["status"] == "done"
    assert "report:" in text and "accuracy" in text


def test_runs_lists_the_run_with_its_main_metric(iris_run):
    run, _ = iris_run
    result, text = invoke("runs", "--root", run.parent)
    assert result.exit_code == 0
    assert "tabular-classification" in text and "test accuracy" in text


def test_predict_prints_json_lines_for_a_json_row_and_a_file(iris_run, tmp_path):
    run, _ = iris_run
    row = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
    result, text = invoke("predict", run, json.dumps(row))
    assert result.exit_code == 0, text
    pred = json.loads(text.strip().splitlines()[-1])
    assert pred["label"] == "setosa" and abs(sum(pred["scores"].values()) - 1) < 1e-4
    table = tmp_path / "rows.csv"
    table.write_text(",".join(row) + "\n" + ",".join(map(str, row.values())) + "\n6.7,3.0,5.2,2.3\n")
    result, text = invoke("predict", run, table)
    lines = [json.loads(l) for l in text.strip().splitlines()]
    assert [l["row"] for l in lines] == [2, 3] and lines[1]["label"] == "virginica"


def test_eval_scores_new_labelled_data(iris_run, tmp_path):
    run, _ = iris_run
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame.rename(columns={"target": "label"})
    frame["label"] = frame["label"].map(dict(enumerate(load_iris().target_names)))
    path = tmp_path / "new.csv"
    frame.to_csv(path, index=False)
    result, text = invoke("eval", run, "--data", path)
    assert result.exit_code == 0, text
    assert json.loads(text.strip().splitlines()[-1])["accuracy"] > 0.8
    assert (run / "eval-new.json").exists()


def test_training_into_a_finished_run_is_refused(iris_run, tmp_path):
    run, _ = iris_run
    result, text = invoke("train", recipe(tmp_path, IRIS), "-o", run)
    assert result.exit_code == 1 and "already holds a finished run" in text


def _assert_clean_failure(result, text, *fragments):
    assert result.exit_code == 1, text
    assert "Traceback" not in text
    for fragment in fragments:
        assert fragment in text, text


def test_wrong_recipe_key_is_one_clear_message(tmp_path):
    path = recipe(tmp_path, {**IRIS, "train": {"epoch": 3}})
    result, text = invoke("train", path)
    _assert_clean_failure(result, text, str(path), "train.epoch", "did you mean 'train.epochs'")


def test_missing_column_is_one_clear_message(tmp_path):
    (tmp_path / "t.csv").write_text("sentence,label\ngood,1\nbad,0\n")
    body = {"name": "t", "task": "text-classification", "data": {"source": "t.csv", "columns": {"text": "text"}}}
    result, text = invoke("check", recipe(tmp_path, body))
    _assert_clean_failure(result, text, "t.csv", "text", "sentence")


def test_empty_file_is_one_clear_message(tmp_path):
    (tmp_path / "t.csv").write_text("")
    body = {"name": "t", "task": "text-classification", "data": {"source": "t.csv"}}
    result, text = invoke("train", recipe(tmp_path, body))
    _assert_clean_failure(result, text, "t.csv", "empty")


def test_corrupt_image_stops_the_run_with_its_row(tmp_path):
    for cls, color in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (8, 8), color).save(tmp_path / "img" / cls / f"{i}.png")
    (tmp_path / "img" / "red" / "broken.png").write_bytes(b"not an image at all")
    body = {"name": "t", "task": "image-classification", "data": {"source": "img"}}
    result, text = invoke("train", recipe(tmp_path, body))
    _assert_clean_failure(result, text, "unreadable", "broken.png")


def test_names_with_brackets_are_printed_exactly(tmp_path):
    (tmp_path / "wear.csv").write_text("Tool wear [min],label\n1,a\n2,b\n")
    body = {**IRIS, "data": {"source": "wear.csv", "columns": {"label": "[bold]failure"}}}
    result, text = invoke("check", recipe(tmp_path, body))
    _assert_clean_failure(result, text, "[bold]failure")  # the missing column, exactly as written
    assert "Tool wear [min]" in text  # and the columns there are, brackets and all


def test_init_help_lists_every_registered_task():
    from danlu import registry

    result, text = invoke("init", "--help")
    assert result.exit_code == 0
    assert all(name in text for name in registry.names())  # derived from the registry: causal-lm included


def test_init_writes_a_starter_and_rejects_unknown_tasks(tmp_path):
    target = tmp_path / "s.yaml"
    result, text = invoke("init", "tabular-classification", "-o", target)
    assert result.exit_code == 0 and "builtin:breast_cancer" in target.read_text()
    result, text = invoke("init", "text-clasification")
    _assert_clean_failure(result, text, "did you mean 'text-classification'")


def test_a_killed_run_resumes_with_the_same_command(tmp_path):
    body = {**IRIS, "train": {**IRIS["train"], "epochs": 400, "checkpoint_every": 25, "keep_checkpoints": 1}}
    path = recipe(tmp_path, body)
    cmd = [sys.executable, "-m", "danlu.cli", "train", str(path), "--runs-root", str(tmp_path / "runs")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    def complete_checkpoint() -> bool:  # renamed into place: its state file is there, it is no temporary folder
        return any(p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()
                   for p in (tmp_path / "runs").glob("iris-*/checkpoints/checkpoint-*"))

    deadline = time.time() + 120
    while time.time() < deadline and not complete_checkpoint():
        time.sleep(0.05)  # a bounded poll for the first complete checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    runs = list((tmp_path / "runs").glob("iris-*"))
    assert len(runs) == 1 and json.loads((runs[0] / "state.json").read_text())["status"] == "running"
    # No handler sees SIGKILL: the run still says "running", but its process is gone.
    result, text = invoke("runs", "--root", tmp_path / "runs")
    assert "interrupted" in text and "resumes from its last checkpoint" in text
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming" in done.stdout
    assert list((tmp_path / "runs").glob("iris-*")) == runs  # the same run directory, not a new one
    report = (runs[0] / "report.md").read_text()
    assert "checkpoint-" in report  # the report records where training resumed from
    assert json.loads((runs[0] / "state.json").read_text())["status"] == "done"


def test_image_run_predicts_an_image_path_and_a_text_run_a_string(tmp_path):
    for cls, color in (("red", (230, 20, 20)), ("blue", (20, 20, 230))):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (8, 8), tuple(max(0, c - 3 * i) for c in color)).save(tmp_path / "img" / cls / f"{i}.png")
    body = {"name": "colours", "task": "image-classification",
            "data": {"source": "img", "split": {"validation": 0, "test": 0.25}},
            "quality": {"max_duplicates": 0.5},
            "model": {"arch": "mlp", "hidden": [8]},
            "train": {"epochs": 15, "batch_size": 4, "optimizer": "adam", "lr": 0.01, "progress": False}}
    result, text = invoke("train", recipe(tmp_path, body), "-o", tmp_path / "run")
    assert result.exit_code == 0, text
    result, text = invoke("predict", tmp_path / "run", tmp_path / "img" / "blue" / "3.png")
    pred = json.loads(text.strip().splitlines()[-1])
    assert pred["label"] == "blue" and pred["image"].endswith("3.png")

    (tmp_path / "t.csv").write_text("text,label\n" + "great film,pos\nawful film,neg\n" * 30)
    body = {"name": "words", "task": "text-classification", "data": {"source": "t.csv"},
            "quality": {"on_fail": "warn"},
            "model": {"layers": 1, "max_length": 8}, "tokenizer": {"vocab_size": 100, "min_frequency": 1},
            "train": {"epochs": 3, "batch_size": 8, "lr": 0.003, "progress": False}}
    result, text = invoke("train", recipe(tmp_path, body, "t.yaml"), "-o", tmp_path / "text-run")
    assert result.exit_code == 0, text
    result, text = invoke("predict", tmp_path / "text-run", "great film")
    pred = json.loads(text.strip().splitlines()[-1])
    assert pred["text"] == "great film" and pred["label"] == "pos"
