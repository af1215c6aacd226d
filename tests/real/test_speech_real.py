"""Speech on the real FSDD recordings (../shared/datasets/fsdd): a short recognition training, then what a
user does with the run: `danlu predict RUN clip.wav`, POST /v1/predict with a base64 wav (and junk, which is
a 422), and the ONNX int8 variant of `danlu compress`. The shipped recipes' full figures (test WER, accuracy)
are in docs/recipes.md; this budget proves the path, not the figure."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from danlu.cli import app
from danlu.pipeline import train
from danlu.recipe import load_recipe
from danlu.serve.app import ServeSettings, create_app
from danlu.serve.runner import load_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from servekit import client_for, run  # noqa: E402

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
# As tests/conftest.py reads it (that conftest is not importable by name once tests/serve is on the path).
DATA = Path(os.environ.get("DANLU_DATA", Path(__file__).resolve().parents[3] / "shared" / "datasets"))

pytestmark = pytest.mark.real
CLIPS = 10  # test clips sent through predict and the server


@pytest.fixture(scope="module")
def asr_run(tmp_path_factory):
    if not (DATA / "fsdd" / "metadata.csv").is_file():
        pytest.skip(f"FSDD not found under {DATA} (set DANLU_DATA to the shared datasets folder)")
    out = tmp_path_factory.mktemp("fsdd") / "run"
    # 2 of 6 speakers' training clips and 250 steps: a few dozen seconds on 2 cores, enough to hear digits.
    recipe = load_recipe(RECIPES / "fsdd_asr.yaml", ["train.max_steps=250", "train.progress=false",
                                                     "train.eval_every=1000", "audio.spec_augment=null",
                                                     "data.limit={train: 900, validation: 60, test: 60}"])
    train(recipe, out)
    return out


@pytest.fixture(scope="module")
def test_clips():
    root = DATA / "fsdd"
    meta = pd.read_csv(root / "metadata.csv")
    rows = meta[meta["split"] == "test"].groupby("digit").head(1).head(CLIPS)
    return [(str(root / path), text) for path, text in zip(rows["path"], rows["transcript"])]


def test_the_short_training_hears_the_digits(asr_run):
    metrics = json.loads((asr_run / "metrics.json").read_text())
    assert metrics["test"]["n"] == 60 and metrics["test"]["wer"] < 0.5
    assert metrics["baselines"]["test"]["majority"]["wer"] >= 0.8


def test_predict_a_wav_file_prints_its_transcript(asr_run, test_clips):
    right = 0
    for path, text in test_clips[:3]:  # each call loads the model: three make the point
        result = CliRunner().invoke(app, ["predict", str(asr_run), path])
        assert result.exit_code == 0, result.output
        right += json.loads(result.output.strip().splitlines()[-1])["text"] == text
    assert right >= 2


def test_the_server_transcribes_a_base64_wav_and_refuses_junk(asr_run, test_clips):
    runner = load_runner(asr_run)

    async def go():
        async with client_for(create_app(runner, ServeSettings())) as client:
            answers = [await client.post("/v1/predict", json={"inputs": {"audio": _b64(path)}})
                       for path, _ in test_clips]
            junk = await client.post("/v1/predict", json={"inputs": {"audio": base64.b64encode(b"no" * 300).decode()}})
            return answers, junk

    answers, junk = run(go())
    assert all(a.status_code == 200 for a in answers), answers[0].text
    heard = [a.json()["predictions"][0]["text"] for a in answers]
    assert sum(h == text for h, (_, text) in zip(heard, test_clips)) >= CLIPS // 2
    assert junk.status_code == 422 and "soundfile" in junk.text


def test_the_int8_onnx_variant_transcribes_like_the_model(asr_run):
    result = CliRunner().invoke(app, ["compress", str(asr_run), "--variants", "onnx-int8", "--latency-examples", "20"])
    assert result.exit_code == 0, result.output
    variants = {v["name"]: v for v in json.loads((asr_run / "variants" / "variants.json").read_text())}
    assert variants["onnx-int8"]["main_metric"] == "wer"
    assert variants["onnx-int8"]["main_value"] <= variants["pytorch-fp32"]["main_value"] + 0.1


def _b64(path: str) -> str:
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()
