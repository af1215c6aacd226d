"""Tiny synthetic canvases: bright squares and crosses on a dark 32x32 field, one or two per image, their
boxes known exactly. The contract test's seconds-long stand-in for the digit canvases (scripts/
make_digit_canvases.py), which are made from real MNIST digits."""

import numpy as np
import pandas as pd

from danlu.tasks.base import Sample

SIDE = 32


def _shape(kind: str, side: int) -> np.ndarray:
    if kind == "square":
        return np.full((side, side), 220, dtype=np.uint8)
    cross = np.zeros((side, side), dtype=np.uint8)
    cross[side // 2 - 1:side // 2 + 2, :] = 220
    cross[:, side // 2 - 1:side // 2 + 2] = 220
    return cross


def sample(rows: int = 60, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    images, objects = [], []
    for i in range(rows):
        img = rng.integers(0, 30, size=(SIDE, SIDE), dtype=np.uint8)
        found = []
        for j in range(1 + i % 2):
            kind = ("square", "cross")[(i + j) % 2]
            side = int(rng.integers(8, 12))
            x, y = int(rng.integers(0, SIDE // 2 - side + 1)) + 16 * j, int(rng.integers(0, SIDE - side + 1))
            img[y:y + side, x:x + side] = np.maximum(img[y:y + side, x:x + side], _shape(kind, side))
            found.append({"bbox": [float(x), float(y), float(side), float(side)], "category": kind,
                          "category_id": 1 + (kind == "cross")})
        images.append(img)
        objects.append(found)
    recipe = {"model": {"arch": "centernet", "channels": [8, 16, 16, 16], "image_size": SIDE},
              "detection": {"augment": None, "report_images": 2},
              "train": {"epochs": 4, "batch_size": 8, "optimizer": "adam", "lr": 0.005, "progress": False}}
    return Sample(pd.DataFrame({"image": pd.Series(images, dtype=object), "objects": objects}), recipe)
