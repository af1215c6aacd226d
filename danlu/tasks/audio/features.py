"""What the audio tasks do to features besides extracting them: SpecAugment masking for training, and
the pooled summary of a clip the linear baselines read."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset


class Augmented(Dataset):
    """Training examples whose log-mel frames get fresh frequency and time masks at every read, so each
    epoch sees other masks (Park et al. 2019). Masked cells take the value 0: the per-clip mean, since
    the features are normalised per clip."""

    def __init__(self, items: list[dict], name: str, spec, seed: int = 0):
        self.items, self.name, self.spec = items, name, spec
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        values = np.array(item[self.name], dtype=np.float32)  # a copy: the stored frames stay clean
        if values.ndim == 2:
            mask(values, self.spec, self.rng)
        return {**item, self.name: values}


def mask(frames: np.ndarray, spec, rng: np.random.Generator) -> None:
    """In place: up to `freq_masks` bands of at most `freq_width` bins, and up to `time_masks` spans of at
    most `time_share` of the frames."""
    count, bins = frames.shape
    for _ in range(spec.freq_masks):
        width = int(rng.integers(0, min(spec.freq_width, bins) + 1))
        start = int(rng.integers(0, bins - width + 1))
        frames[:, start:start + width] = 0.0
    longest = int(spec.time_share * count)
    for _ in range(spec.time_masks):
        width = int(rng.integers(0, longest + 1))
        start = int(rng.integers(0, count - width + 1))
        frames[start:start + width] = 0.0


SEGMENTS = 5  # equal stretches of the clip, each averaged: a fixed-size picture of the sound's course


def pooled_features(values: np.ndarray) -> np.ndarray:
    """One fixed-size vector per clip: each feature averaged over SEGMENTS equal stretches of time (the
    features are normalised per clip, so a whole-clip mean says nothing), and the clip's length in frames.
    A raw wave is read as 20 ms blocks' log energies first."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 1:
        block = max(1, len(values) // 50)
        values = np.log1p(np.abs(values[: len(values) // block * block].reshape(-1, block)).mean(1, keepdims=True))
    pieces = np.array_split(values, SEGMENTS) if len(values) >= SEGMENTS else [values] * SEGMENTS
    return np.concatenate([*(p.mean(0) for p in pieces), [np.log1p(len(values))]]).astype(np.float32)
