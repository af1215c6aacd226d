"""Tiny finished runs to compress: iris (tabular MLP) and a one-layer BERT on synthetic sentences."""

import random
from pathlib import Path

import pytest

from danlu.compress.pipeline import compress_run
from danlu.pipeline import train
from danlu.recipe import recipe_from_dict

IRIS = {
    "name": "iris", "task": "tabular-classification",
    "data": {"source": "builtin:iris", "split": {"validation": 0.2, "test": 0.2, "seed": 0}},
    "quality": {"max_leakage": 0.05},  # iris repeats a few flowers
    "model": {"hidden": [16]},
    "train": {"epochs": 20, "batch_size": 16, "optimizer": "adam", "lr": 0.01, "progress": False},
}

GOOD = "good great fine lovely superb moving funny".split()
BAD = "bad awful dull boring poor weak tedious".split()
FILL = "the movie film plot acting was really quite very a an and story".split()


def sentences(n: int = 240, seed: int = 0) -> str:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = [rng.choice(FILL) for _ in range(rng.randint(3, 14))] + [rng.choice(GOOD if label else BAD)]
        rng.shuffle(words)
        rows.append(f"{' '.join(words)},{'pos' if label else 'neg'}")
    return "text,label\n" + "\n".join(rows) + "\n"


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # Tiny models gain nothing from a second thread, and on a shared 2-core machine two threads
    # contending with other processes ran several times slower than one.
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def iris_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("iris") / "run"
    train(recipe_from_dict(IRIS), out)
    return out


@pytest.fixture(scope="session")
def text_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("text")
    (tmp / "reviews.csv").write_text(sentences())
    recipe = recipe_from_dict({
        "name": "tiny-text", "task": "text-classification",
        "data": {"source": str(tmp / "reviews.csv"), "split": {"validation": 0.2, "test": 0.2, "seed": 0}},
        "model": {"arch": "bert", "size": "tiny", "layers": 1, "max_length": 32},
        "tokenizer": {"vocab_size": 200, "min_frequency": 1},
        "train": {"epochs": 10, "batch_size": 16, "lr": 0.003, "progress": False},  # learns the keywords
    })
    train(recipe, tmp / "run")
    return tmp / "run"


TEXT_VARIANTS = ["onnx-fp32", "onnx-int8", "torch-int8", "prune-structured-0.3"]


@pytest.fixture(scope="session")
def text_compressed(text_run) -> tuple[Path, list[dict]]:
    figures = compress_run(text_run, TEXT_VARIANTS, batch=8, recovery_steps=3, latency_examples=10)
    return text_run, figures


@pytest.fixture(scope="session")
def iris_compressed(iris_run) -> tuple[Path, list[dict]]:
    figures = compress_run(iris_run, ["onnx-fp32", "prune-magnitude-0.5", "prune-structured-0.3+onnx-int8"],
                           batch=8, recovery_steps=3, latency_examples=10)
    return iris_run, figures
