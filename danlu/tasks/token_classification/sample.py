"""Short synthetic sentences with people (PER) and places (LOC), some of two words."""

import numpy as np
import pandas as pd

from danlu.tasks.base import Sample

PEOPLE = ["Anna", "Ben Okafor", "Clara", "David Lee", "Emma", "Felix Braun", "Grace", "Hugo Silva"]
PLACES = ["Paris", "Berlin", "New York", "Rome", "Cape Town", "Oslo", "Lima", "Hong Kong"]
TEMPLATES = ["{PER} lives in {LOC} .", "{PER} flew to {LOC} yesterday .", "we met {PER} in {LOC} .",
             "the weather in {LOC} was fine .", "{PER} said nothing .", "{PER} and {PER} left {LOC} ."]


def sample(rows: int = 60, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    texts, token_lists, tag_lists = [], [], []
    for _ in range(rows):
        tokens, tags = [], []
        for slot in TEMPLATES[int(rng.integers(len(TEMPLATES)))].split():
            if slot in ("{PER}", "{LOC}"):
                kind = slot[1:-1]
                words = str(rng.choice(PEOPLE if kind == "PER" else PLACES)).split()
                tokens += words
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1)
            else:
                tokens.append(slot)
                tags.append("O")
        texts.append(" ".join(tokens))
        token_lists.append(tokens)
        tag_lists.append(tags)
    recipe = {"model": {"arch": "bert", "layers": 1, "embedding": 32, "heads": 2, "feed_forward": 64,
                        "max_length": 32},
              "tokenizer": {"vocab_size": 100, "min_frequency": 1},
              "train": {"epochs": 10, "batch_size": 8, "lr": 0.005, "progress": False, "precision": "fp32"}}
    return Sample(pd.DataFrame({"text": texts, "tokens": token_lists, "label": tag_lists}), recipe)
