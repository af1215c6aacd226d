"""Synthetic images for tests: noisy single-colour squares, one colour per class."""

import numpy as np
from PIL import Image

COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def colour_squares(folder, per_class: int, noise: float = 20, size: int = 16) -> list[tuple[str, str]]:
    """Writes `per_class` PNGs of each colour into `folder`; returns (path, colour name) rows."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, color in COLORS.items():
        for i in range(per_class):
            arr = np.clip(np.array(color) + rng.normal(0, noise, size=(size, size, 3)), 0, 255).astype(np.uint8)
            path = folder / f"{name}-{i}.png"
            Image.fromarray(arr).save(path)
            rows.append((str(path), name))
    return rows
