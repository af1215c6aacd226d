"""Moving digits from the real MNIST images ($DANLU_DATA/mnist): the generator's clips are the same bytes for
a seed and move the way their folder says; the shipped recipe, on a few hundred of them and a short budget,
learns the directions, and `danlu predict RUN clip.mp4` answers for one clip. The full recipe's figure
(4,000 / 1,000 clips) is in docs/recipes.md; this budget proves the path, not the figure."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from danlu.cli import app
from danlu.data.video import decode
from danlu.pipeline import train
from danlu.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DANLU_DATA", ROOT.parent / "shared" / "datasets"))

pytestmark = pytest.mark.real


def make(out: Path, train_clips: int, test_clips: int) -> None:
    if not (DATA / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST not found under {DATA} (set DANLU_DATA to the shared datasets folder)")
    spec = importlib.util.spec_from_file_location("make_moving_digits", ROOT / "scripts" / "make_moving_digits.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--out", str(out), "--seed", "0", "--train", str(train_clips), "--test", str(test_clips)]) == 0


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.mp4"))}


def test_the_generator_is_byte_identical_for_a_seed_and_clips_move_as_labelled(tmp_path):
    make(tmp_path / "a", 16, 8)
    make(tmp_path / "b", 16, 8)
    found = digests(tmp_path / "a")
    assert found == digests(tmp_path / "b") and len(found) == 24
    ys, xs = np.mgrid[:48, :48]
    for clip in sorted((tmp_path / "a" / "train").rglob("*.mp4")):
        frames = np.stack(decode(str(clip))[0])[..., 0].astype(np.float64)  # (16, 48, 48) grey
        assert frames.shape == (16, 48, 48)
        centre = [((f * xs).sum() / f.sum(), (f * ys).sum() / f.sum()) for f in (frames[0], frames[-1])]
        dx, dy = centre[1][0] - centre[0][0], centre[1][1] - centre[0][1]
        moved = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
        assert moved == clip.parent.name, clip


def test_the_shipped_recipe_learns_directions_on_a_few_hundred_clips(tmp_path):
    make(tmp_path / "clips", 320, 80)
    recipe = load_recipe(ROOT / "recipes" / "moving_digits.yaml",
                         [f"data.train={tmp_path / 'clips' / 'train'}", f"data.test={tmp_path / 'clips' / 'test'}",
                          "train.epochs=4", "train.progress=false", "train.batch_size=16"])
    run = train(recipe, tmp_path / "run")
    metrics = json.loads(run.metrics_path.read_text())
    assert metrics["test"]["n"] == 80 and metrics["test"]["accuracy"] >= 0.9
    clip = next((tmp_path / "clips" / "test" / "left").glob("*.mp4"))
    result = CliRunner().invoke(app, ["predict", str(run.root), str(clip)])
    assert result.exit_code == 0, result.output
    assert "left" in result.output
