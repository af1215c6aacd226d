"""Noisy grey 16x16 images holding a bright square and a dark bar at random places, with their masks
(0 background, 1 square, 2 bar): arrays, as a reader of PNGs would hand them over."""

import numpy as np
import pandas as pd

from danlu.tasks.base import Sample

SIDE = 16
CLASSES = ["background", "square", "bar"]


def scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    image = rng.normal(128, 12, size=(SIDE, SIDE))
    mask = np.zeros((SIDE, SIDE), dtype=np.uint8)
    top, left, side = int(rng.integers(0, 9)), int(rng.integers(0, 9)), int(rng.integers(4, 8))
    image[top:top + side, left:left + side] += 90
    mask[top:top + side, left:left + side] = 1
    row = int(rng.integers(0, SIDE - 2))
    image[row:row + 2, :] -= 90
    mask[row:row + 2, :] = 2
    return np.clip(image, 0, 255).astype(np.uint8), mask


def sample(rows: int = 60, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    pairs = [scene(rng) for _ in range(rows)]
    frame = pd.DataFrame({"image": pd.Series([p[0] for p in pairs], dtype=object),
                          "mask": pd.Series([p[1] for p in pairs], dtype=object)})
    recipe = {"model": {"arch": "unet", "channels": [8], "layers": 2, "image_size": SIDE},
              "segmentation": {"classes": CLASSES},
              "train": {"epochs": 8, "batch_size": 8, "optimizer": "adam", "lr": 0.01, "progress": False}}
    return Sample(frame, recipe)
