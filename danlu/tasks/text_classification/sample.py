"""Sentences whose class is given by one keyword among filler words."""

import numpy as np
import pandas as pd

from danlu.tasks.base import Sample

GOOD = "good great fine lovely superb".split()
BAD = "bad awful dull boring poor".split()
FILL = "the movie film plot acting was really quite very a and story".split()


def sample(rows: int = 60, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(rows):
        positive = i % 2 == 0
        words = list(rng.choice(FILL, size=int(rng.integers(2, 8)))) + [rng.choice(GOOD if positive else BAD)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append("pos" if positive else "neg")
    recipe = {"model": {"arch": "bert", "size": "tiny", "layers": 1, "embedding": 32, "heads": 2,
                        "feed_forward": 64, "max_length": 16},
              "tokenizer": {"vocab_size": 100, "min_frequency": 1},
              "train": {"epochs": 8, "batch_size": 8, "lr": 0.005, "progress": False, "precision": "fp32"}}
    return Sample(pd.DataFrame({"text": texts, "label": labels}), recipe)
