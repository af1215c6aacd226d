"""Training augmentations that move the boxes with the pixels: a zoom about the centre, a shift, a mirror."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from torch.utils.data import Dataset


def augment(img: Image.Image, boxes: np.ndarray, cfg, rng: np.random.Generator) -> tuple[Image.Image, np.ndarray]:
    """`boxes`: (n, 5) [class, x1, y1, x2, y2] normalised. A box left with less than cfg.min_visible of its
    area inside the picture, or under a pixel wide, is dropped."""
    side_w, side_h = img.size
    scale = math.exp(rng.uniform(math.log(cfg.scale[0]), math.log(cfg.scale[1])))
    tx, ty = rng.uniform(-cfg.translate, cfg.translate, size=2)
    # PIL's affine maps each output pixel back to the input: x_in = (x_out - c_x) / scale + w / 2
    cx, cy = side_w / 2 + tx * side_w, side_h / 2 + ty * side_h
    img = img.transform(img.size, Image.AFFINE, (1 / scale, 0, side_w / 2 - cx / scale,
                                                 0, 1 / scale, side_h / 2 - cy / scale), Image.BILINEAR)
    out = boxes.astype(np.float32, copy=True)
    if len(out):
        out[:, [1, 3]] = (out[:, [1, 3]] - 0.5) * scale + 0.5 + tx
        out[:, [2, 4]] = (out[:, [2, 4]] - 0.5) * scale + 0.5 + ty
        whole = (out[:, 3] - out[:, 1]) * (out[:, 4] - out[:, 2])
        out[:, 1:] = out[:, 1:].clip(0, 1)
        kept = (out[:, 3] - out[:, 1]) * (out[:, 4] - out[:, 2])
        wide = ((out[:, 3] - out[:, 1]) * side_w >= 1) & ((out[:, 4] - out[:, 2]) * side_h >= 1)
        out = out[wide & (kept >= cfg.min_visible * whole)]
    if cfg.flip and rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
        out[:, [1, 3]] = 1 - out[:, [3, 1]]
    return img, out


class Augmented(Dataset):
    """Training examples augmented afresh at every read (each epoch sees other zooms and shifts)."""

    def __init__(self, rows: list, encode_one, cfg, seed: int = 0):
        self.rows, self.encode_one, self.cfg = rows, encode_one, cfg
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.encode_one(self.rows[i], augment=lambda img, boxes: augment(img, boxes, self.cfg, self.rng))
