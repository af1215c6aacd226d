"""compress, match and export through a Typer app, as a user types them."""

import json
import shutil

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

    result, text = invoke("match", run, "--max-mb", "0.000001")
    assert result.exit_code == 1 and "no variant meets every constraint" in text and "--max-mb" in text

    # No onnx-fp32 variant was made: export traces the model itself.
    result, text = invoke("export", run, "--format", "onnx", "-o", tmp_path / "onnx")
    assert result.exit_code == 0, text
    assert {"model.onnx", "config.json", "danlu.json", "preprocessor.joblib"} <= {
        p.name for p in (tmp_path / "onnx").iterdir()}
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"inputs": np.zeros((3, 4), dtype=np.float32)})[0].shape == (3, 3)

    result, text = invoke("export", run, "--format", "safetensors", "-o", tmp_path / "st")
    assert result.exit_code == 0, text
    assert {"model.safetensors", "config.json"} <= {p.name for p in (tmp_path / "st").iterdir()}
    assert ClassicModel.from_pretrained(tmp_path / "st").config.num_labels == 3

    result, text = invoke("export", run, "--format", "onnx", "--variant", "onnx-int8", "-o", tmp_path / "q")
    assert result.exit_code == 0, text
    quantized = run / "variants" / "onnx-int8" / "model.onnx"
    assert (tmp_path / "q" / "model.onnx").read_bytes() == quantized.read_bytes()


def test_user_mistakes_are_one_clear_message(run, tmp_path):
    result, text = invoke("compress", run, "--variants", "onnx-int9")
    assert result.exit_code == 1 and "did you mean 'onnx-int8'" in text
    result, text = invoke("export", run, "--format", "tflite")
    assert result.exit_code == 1 and "onnx, safetensors" in text
    result, text = invoke("compress", tmp_path / "nowhere")
    assert result.exit_code == 1 and "no such run directory" in text
    result, text = invoke("match", tmp_path)
    assert result.exit_code == 1 and "danlu compress" in text
