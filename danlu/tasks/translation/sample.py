"""Sentences of a toy language pair: each source word has one target word, and the target puts the
verb last (as German does in a subordinate clause), so the model must reorder as well as look up."""

import numpy as np
import pandas as pd

from danlu.tasks.base import Sample

SUBJECTS = {"the cat": "die katze", "the dog": "der hund", "a bird": "ein vogel", "the man": "der mann"}
VERBS = {"sees": "sieht", "likes": "mag", "finds": "findet"}
OBJECTS = {"the ball": "den ball", "a fish": "einen fisch", "the tree": "den baum", "a house": "ein haus"}

RECIPE = {"model": {"layers": 1, "embedding": 32, "heads": 2, "feed_forward": 64, "max_length": 32},
          "tokenizer": {"vocab_size": 400, "min_frequency": 1},
          "translation": {"beams": 2, "samples": 2, "max_new_tokens": 24},
          "train": {"max_steps": 30, "batch_size": 8, "lr": 0.01, "warmup": 0, "progress": False,
                    "precision": "fp32"}}


def pair(rng: np.random.Generator) -> tuple[str, str]:
    subject, verb, obj = (list(words)[rng.integers(len(words))] for words in (SUBJECTS, VERBS, OBJECTS))
    return (f"{subject} {verb} {obj}.", f"dass {SUBJECTS[subject]} {OBJECTS[obj]} {VERBS[verb]}.")


def sample(rows: int = 60, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    pairs = [pair(rng) for _ in range(rows)]
    return Sample(pd.DataFrame({"source": [s for s, _ in pairs], "target": [t for _, t in pairs]}), RECIPE)
