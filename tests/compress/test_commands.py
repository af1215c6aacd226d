"""compress, match and export through a Typer app, as a user types them."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import typer
from typer.testing import CliRunner

from danlu.compress.commands import register
from danlu.models import ClassicModel

app = typer.Typer()
register(app)
runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result, result.output


@pytest.fixture(scope="module")
def run(iris_run, tmp_path_factory):
    copy = tmp_path_factory.mktemp("cli") / "run"
    shutil.copytree(iris_run, copy, ignore=shutil.ignore_patterns("variants", "checkpoints"))
    return copy


def test_compress_match_export(run, tmp_path):
    result, text = invoke("compress", run, "--variants", "onnx-int8,torch-int8", "--batch", "4",
                          "--latency-examples", "5", "--recovery-steps", "0")
    assert result.exit_code == 0, text
    assert "onnx-int8" in text and "report:" in text
    table = json.loads((run / "variants" / "variants.json").read_text())
    assert [v["name"] for v in table] == ["pytorch-fp32", "onnx-int8", "torch-int8"]

    result, text = invoke("match", run, "--p95-ms", "1000", "--max-mb", "1", "--min-metric", "0.5",
                          "--cost-per-hour", "1.0")
    assert result.exit_code == 0, text
    deployment = json.loads((run / "variants" / "deployment.json").read_text())
    assert deployment["variant"] in {v["name"] for v in table}
    assert deployment["cost_per_million_requests"] > 0 and set(deployment["others"]) | {deployment["variant"]} == {
        v["name"] for v in table}

    # `danlu serve RUN` now serves the variant match chose, and says so.
    from danlu.serve.runner import load_runner

    served = load_runner(run)
    assert served.info.variant == deployment["variant"] and served.info.chosen_by == "danlu match"

    result, text = invoke("match", run, "--max-mb", "0.000001")
    assert result.exit_code == 1 and "no variant meets every constraint" in text and "--max-mb" in text

    # No onnx-fp32 variant was made: export traces the model itself, and lists every file it wrote.
    result, text = invoke("export", run, "--format", "onnx", "-o", tmp_path / "onnx")
    assert result.exit_code == 0, text
    listed = {Path(p).name for p in json.loads(text)["files"]}
    assert {"model.onnx", "config.json", "danlu.json", "preprocessing.json"} <= listed
    assert listed == {p.name for p in (tmp_path / "onnx").iterdir()}
    # Plain onnxruntime on the raw feature columns gives the run's own test accuracy: the fitted
    # preprocessing is inside the graph.
    test = _test_split(run)
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {i.name: test[i.name].to_numpy(np.float32)[:, None] for i in session.get_inputs()}
    labels = json.loads((run / "model" / "danlu.json").read_text())["labels"]
    predicted = np.asarray(labels)[session.run(None, feeds)[0].argmax(1)]
    accuracy = float((predicted == test["label"].to_numpy()).mean())
    assert accuracy == json.loads((run / "metrics.json").read_text())["test"]["accuracy"]

    result, text = invoke("export", run, "--format", "safetensors", "-o", tmp_path / "st")
    assert result.exit_code == 0, text
    assert {"model.safetensors", "config.json"} <= {p.name for p in (tmp_path / "st").iterdir()}
    assert ClassicModel.from_pretrained(tmp_path / "st").config.num_labels == 3

    result, text = invoke("export", run, "--format", "onnx", "--variant", "onnx-int8", "-o", tmp_path / "q")
    assert result.exit_code == 0, text
    quantized = ort.InferenceSession(str(tmp_path / "q" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert {i.name for i in quantized.get_inputs()} == set(feeds)  # raw columns in front of the int8 network
    agree = (quantized.run(None, feeds)[0].argmax(1) == session.run(None, feeds)[0].argmax(1)).mean()
    assert agree >= 0.9


def _test_split(run):
    from danlu.pipeline import check_data
    from danlu.recipe import load_recipe
    from danlu.run import Run

    r = Run(run)
    return check_data(load_recipe(r.recipe_path, base_dir=r.state().get("recipe_dir")))[0].frames["test"]


def test_user_mistakes_are_one_clear_message(run, tmp_path):
    result, text = invoke("compress", run, "--variants", "onnx-int9")
    assert result.exit_code == 1 and "did you mean 'onnx-int8'" in text
    result, text = invoke("export", run, "--format", "tflite")
    assert result.exit_code == 1 and "onnx, safetensors" in text
    result, text = invoke("compress", tmp_path / "nowhere")
    assert result.exit_code == 1 and "no such run directory" in text
    result, text = invoke("match", tmp_path)
    assert result.exit_code == 1 and "danlu compress" in text
