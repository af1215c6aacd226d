from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def write(tmp_path):
    """write("name.csv", text) -> path of a file in tmp_path."""

    def _write(name: str, text: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return _write


@pytest.fixture
def image_folder(tmp_path):
    """make(layout={"cat": 3, "dog": 2}, root="imgs") -> folder of tiny, distinct JPEGs."""
    from PIL import Image

    def _make(layout: dict[str, int], root: str = "imgs", seed: int = 0) -> Path:
        rng = np.random.default_rng(seed)
        base = tmp_path / root
        for label, count in layout.items():
            (base / label).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(base / label / f"{i:03d}.jpg", quality=95)
        return base

    return _make


@pytest.fixture
def idx_files(tmp_path):
    """make(n) -> (images.gz, labels.gz) in MNIST's idx layout, label i % 10, image filled with i."""

    def _make(n: int = 20, label_count: int | None = None) -> tuple[Path, Path]:
        images = np.stack([np.full((28, 28), i % 256, dtype=np.uint8) for i in range(n)])
        labels = (np.arange(label_count if label_count is not None else n) % 10).astype(np.uint8)
        img = tmp_path / "imgs-idx3-ubyte.gz"
        lab = tmp_path / "labels-idx1-ubyte.gz"
        img.write_bytes(gzip.compress(struct.pack(">HBBIII", 0, 8, 3, n, 28, 28) + images.tobytes()))
        lab.write_bytes(gzip.compress(struct.pack(">HBBI", 0, 8, 1, len(labels)) + labels.tobytes()))
        return img, lab

    return _make
