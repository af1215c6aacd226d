"""Encoded examples as torch Datasets: what a task's `encode` returns and the engines read."""

from __future__ import annotations

from torch.utils.data import Dataset


class Examples(Dataset):
    """A list of already-encoded examples (dicts of lists / arrays)."""

    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class LazyExamples(Dataset):
    """Examples encoded when read (images: decoding all of them up front costs memory)."""

    def __init__(self, rows: list, encode_one):
        self.rows = rows
        self.encode_one = encode_one

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.encode_one(self.rows[i])


SEQUENCE_KEYS = ("input_ids", "input_features", "input_values")  # tokens, audio frames, raw audio


def item_length(item: dict) -> int | None:
    """The length of an example's sequence input (what padding is paid on), None for fixed-size inputs."""
    if isinstance(item, dict):
        for key in SEQUENCE_KEYS:
            if key in item:
                return len(item[key])
    return None
