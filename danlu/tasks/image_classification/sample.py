"""Noisy single-colour squares, one colour per class (arrays, as MNIST's idx images are)."""

import numpy as np
import pandas as pd

from danlu.tasks.base import Sample

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def sample(rows: int = 60, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    images, labels = [], []
    for i in range(rows):
        name = names[i % len(names)]
        noisy = np.array(COLOURS[name]) + rng.normal(0, 20, size=(8, 8, 3))
        images.append(np.clip(noisy, 0, 255).astype(np.uint8))
        labels.append(name)
    recipe = {"model": {"arch": "cnn", "channels": [4], "hidden": [8], "image_size": 8},
              "train": {"epochs": 5, "batch_size": 8, "optimizer": "adam", "lr": 0.01, "progress": False}}
    return Sample(pd.DataFrame({"image": images, "label": labels}), recipe)
