"""Synthesised clips: tones whose pitch says the class, and 'words' of tone letters to transcribe.

Real speech comes from espeak-ng or the FSDD recordings in the tests; these are the contract test's
seconds-long stand-ins, made by a synthesiser (sines with noise), not mocks of audio.
"""

import numpy as np
import pandas as pd

from danlu.tasks.base import Sample

RATE = 8_000
PITCH = {"low": 300.0, "mid": 800.0, "high": 1800.0}
LETTERS = {"a": 400.0, "b": 1000.0, "c": 2200.0}
RECIPE = {"model": {"arch": "conformer", "layers": 1, "embedding": 32, "heads": 2, "feed_forward": 64},
          "audio": {"sampling_rate": RATE, "mel_bins": 32, "spec_augment": None},
          "train": {"epochs": 6, "batch_size": 8, "lr": 0.003, "progress": False, "precision": "fp32"}}


def tone(freq: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * freq * t) + rng.normal(0, 0.02, len(t))).astype(np.float32)


def word(letters: str, rng: np.random.Generator) -> np.ndarray:
    gap = np.zeros(int(0.03 * RATE), dtype=np.float32)
    parts = [gap]
    for letter in letters:
        parts += [tone(LETTERS[letter], float(rng.uniform(0.09, 0.13)), rng), gap]
    return np.concatenate(parts)


def classification_sample(rows: int = 60, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    names = list(PITCH)
    labels = [names[i % len(names)] for i in range(rows)]
    clips = [tone(PITCH[name] * float(rng.uniform(0.95, 1.05)), float(rng.uniform(0.2, 0.4)), rng) for name in labels]
    return Sample(pd.DataFrame({"audio": pd.Series(clips, dtype=object), "label": labels}), RECIPE)


def recognition_sample(rows: int = 60, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    texts = ["".join(rng.choice(list(LETTERS), size=int(rng.integers(1, 4)))) for _ in range(rows)]
    clips = [word(text, rng) for text in texts]
    recipe = {**RECIPE, "train": {**RECIPE["train"], "epochs": 12}}
    return Sample(pd.DataFrame({"audio": pd.Series(clips, dtype=object), "transcript": texts}), recipe)
