"""The causal-lm recipes on the real corpora, with short budgets; the full runs' figures are in
docs/recipes.md (Shakespeare: validation loss 1.89 or lower after the shipped 2,000 iterations)."""

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from danlu.predict import generate_text as generate
from danlu.pipeline import train
from danlu.recipe import load_recipe

pytestmark = pytest.mark.real
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def unigram_loss(train_text: str, val_text: str) -> float:
    """Cross-entropy per character of the training text's character frequencies (add-one) on the validation text."""
    counts = Counter(train_text)
    total = sum(counts.values()) + len(counts) + 1
    return -sum(math.log((counts.get(c, 0) + 1) / total) for c in val_text) / len(val_text)


def test_shakespeare_char_beats_the_unigram_baseline_quickly(datasets_dir, tmp_path):
    text = (datasets_dir / "tiny_shakespeare" / "input.txt").read_text()
    cut = len(text) - math.ceil(0.1 * len(text))
    baseline = unigram_loss(text[:cut], text[cut:])  # about 3.3 nats
    recipe = load_recipe(RECIPES / "shakespeare_char.yaml",
                         ["train.max_steps=200", "train.warmup=20", "train.eval_every=200", "train.progress=false",
                          "generate.samples=1", "generate.max_new_tokens=50"])
    run = train(recipe, tmp_path / "run")
    val = json.loads(run.metrics_path.read_text())["validation"]
    assert val["n"] == len(text) - cut - 1
    assert val["loss"] < baseline - 0.5, (val["loss"], baseline)
    assert "## Samples" in (run.root / "report.md").read_text()
    pieces = list(generate(run.root, "ROMEO:", max_new_tokens=80, seed=0))
    assert len("".join(pieces)) > 40


def test_tang_poems_train_and_measure_line_structure(datasets_dir, tmp_path):
    folder = datasets_dir / "chinese_poetry_tang"

    def poems(paths):
        return "\n".join("\n".join(r["paragraphs"]) for p in paths for r in json.loads(p.read_text()))

    baseline = unigram_loss(poems(sorted(folder.glob("poet.tang.[0-8]*.json"))),
                            poems([folder / "poet.tang.9000.json"]))  # about 6.4 nats
    recipe = load_recipe(RECIPES / "tang_poems_gpt.yaml",
                         ["train.max_steps=200", "train.warmup=20", "train.eval_every=200", "train.progress=false",
                          "generate.samples=2", "generate.max_new_tokens=60"])
    run = train(recipe, tmp_path / "run")
    metrics = json.loads(run.metrics_path.read_text())
    assert metrics["validation"]["loss"] < baseline - 0.3, (metrics["validation"], baseline)
    gen = metrics["generation"]
    assert gen["dominant_lengths"] == [5, 7] and gen["corpus_line_structure"] > 0.9
    assert 0.0 <= gen["line_structure"] <= 1.0
