"""A few short, repetitive documents a one-layer model learns in a few dozen steps."""

import numpy as np
import pandas as pd

from danlu.tasks.base import Sample

LINES = ["the cat sat on the mat.", "the dog ran to the log.", "a bird sang in the tree."]


def sample(rows: int = 60, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    docs = [" ".join(rng.choice(LINES, size=4)) for _ in range(rows)]
    recipe = {"model": {"layers": 1, "embedding": 32, "heads": 2, "feed_forward": 64, "max_length": 16},
              "tokenizer": {"kind": "char", "min_frequency": 1},
              "train": {"max_steps": 30, "batch_size": 8, "lr": 0.01, "progress": False, "precision": "fp32"},
              "generate": {"samples": 1, "max_new_tokens": 20}}
    return Sample(pd.DataFrame({"text": docs}), recipe)
