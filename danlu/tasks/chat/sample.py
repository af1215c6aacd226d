"""A few dozen tiny conversations about colours, in the three shapes the data stage reads, some of them
multi-turn: a one-layer model learns to answer and end its turn in a few dozen steps."""

import numpy as np
import pandas as pd

from danlu.tasks.base import Sample
from danlu.tasks.chat.conversations import conversations_of

COLOURS = [("sky", "blue"), ("grass", "green"), ("snow", "white"), ("coal", "black"), ("sun", "yellow"),
           ("blood", "red")]
RECIPE = {"model": {"layers": 1, "embedding": 32, "heads": 2, "feed_forward": 64, "max_length": 96},
          "tokenizer": {"kind": "char", "min_frequency": 1},
          "train": {"max_steps": 40, "batch_size": 8, "lr": 0.01, "progress": False, "precision": "fp32"},
          "chat": {"max_new_tokens": 12, "eval_replies": 6, "examples": 2}}


def record(i: int, rng) -> dict:
    """Conversation i in shape i % 3: messages, ShareGPT conversations, Alpaca."""
    (a, colour_a), (b, colour_b) = (COLOURS[k] for k in rng.choice(len(COLOURS), size=2, replace=False))
    turns = [("user", f"colour of {a}?"), ("assistant", f"{colour_a}.")]
    if i % 4 == 3:
        turns += [("user", f"and {b}?"), ("assistant", f"{colour_b}.")]
    if i % 3 == 0:
        return {"messages": [{"role": r, "content": c} for r, c in turns]}
    if i % 3 == 1:
        return {"conversations": [{"from": "human" if r == "user" else "gpt", "value": c} for r, c in turns]}
    history = [[turns[k][1], turns[k + 1][1]] for k in range(0, len(turns) - 2, 2)]
    return {"instruction": turns[-2][1], "output": turns[-1][1], "history": history}


def sample(rows: int = 60, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    raw = pd.DataFrame([record(i, rng) for i in range(rows)])
    raw["_row"], raw["_source"] = np.arange(1, rows + 1), "sample.jsonl"
    return Sample(conversations_of(raw), RECIPE)
