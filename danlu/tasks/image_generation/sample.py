"""Bars on noise, one direction per class: 8x8 grey arrays (as MNIST's idx images are) a tiny GAN and its
domain classifier learn in seconds."""

import numpy as np
import pandas as pd

from danlu.tasks.base import Sample

SIDE = 8


def bar(kind: str, rng: np.random.Generator) -> np.ndarray:
    image = rng.normal(30, 10, size=(SIDE, SIDE))
    at = int(rng.integers(1, SIDE - 1))
    if kind == "across":
        image[at] = 230
    elif kind == "down":
        image[:, at] = 230
    else:
        np.fill_diagonal(image, 230)
    return np.clip(image, 0, 255).astype(np.uint8)


def sample(rows: int = 60, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    kinds = ["across", "down", "diagonal"]
    labels = [kinds[i % len(kinds)] for i in range(rows)]
    images = [bar(kind, rng) for kind in labels]
    recipe = {"model": {"image_size": SIDE},
              "gan": {"latent": 8, "conditional": True, "generator": {"channels": [16, 8]},
                      "discriminator": {"channels": [8, 16], "spectral_norm": True}, "label_smoothing": 0.9,
                      "samples": 48, "preview": 9, "classifier": {"channels": [4], "epochs": 5, "batch_size": 8}},
              "train": {"epochs": 2, "batch_size": 8, "schedule": "constant", "progress": False}}
    return Sample(pd.DataFrame({"image": images, "label": labels}), recipe)
