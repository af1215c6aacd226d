"""A bright square sliding left or right across a dark noisy frame: the direction is the class, so only a
model that sees the frames in order learns it (arrays of frames, as the video reader hands them over)."""

import numpy as np
import pandas as pd

from danlu.tasks.base import Sample

SIDE, FRAMES, BOX = 16, 8, 5
RECIPE = {"model": {"arch": "cnn", "channels": [8, 8], "embedding": 16, "layers": 1},
          "video": {"frames": FRAMES, "size": SIDE},
          "train": {"epochs": 8, "batch_size": 8, "optimizer": "adam", "lr": 0.01, "progress": False,
                    "precision": "fp32"}}


def clip(direction: str, rng: np.random.Generator) -> np.ndarray:
    """(FRAMES, SIDE, SIDE) uint8."""
    frames = rng.integers(0, 40, size=(FRAMES, SIDE, SIDE)).astype(np.uint8)
    row = int(rng.integers(0, SIDE - BOX + 1))
    # Both directions cover the same columns, drawn alike: only the order of the frames tells them apart.
    start = int(rng.integers(0, SIDE - BOX - FRAMES + 2))
    for t in range(FRAMES):
        col = start + (t if direction == "right" else FRAMES - 1 - t)
        frames[t, row:row + BOX, col:col + BOX] = 220
    return frames


def sample(rows: int = 60, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    labels = ["left" if i % 2 else "right" for i in range(rows)]
    clips = [clip(label, rng) for label in labels]
    return Sample(pd.DataFrame({"video": pd.Series(clips, dtype=object), "label": labels}), RECIPE)
