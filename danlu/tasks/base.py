"""The surface every task module shares.

A task says which columns it needs (`roles`), fits its preprocessing on the training split
(`setup`), builds the model (`build_model`), turns a DataFrame into examples (`encode`) and
examples into a batch (`collate`), measures predictions (`metrics`), and turns model outputs
into JSON (`to_json`). `save`/`load` put the model and everything needed to use it in one
directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from danlu.evaluate.metrics import classification_metrics, regression_metrics, scalar_metrics
from danlu.run import atomic_write_json

META_FILE = "danlu.json"


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


class Task:
    name = ""
    kind = "classification"  # or "regression"
    roles: tuple[str, ...] = ()
    input_roles: tuple[str, ...] = ()  # what predict needs (roles without the label)
    large_model = False  # a transformer: bf16 and compile pay off (see train.engine)
    group_by_length = False  # variable-length inputs: batch similar lengths together

    def __init__(self, recipe=None):
        self.recipe = recipe
        self.labels: list = []  # class values in id order

    # -- labels ---------------------------------------------------------------
    def fit_labels(self, values: pd.Series) -> None:
        if self.kind != "classification":
            return
        uniq = pd.unique(values.dropna())
        self.labels = sorted((_plain(v) for v in uniq), key=lambda v: (isinstance(v, str), v))

    def label_ids(self, values: pd.Series) -> np.ndarray:
        if self.kind == "regression":
            return values.astype(np.float32).to_numpy()
        index = {str(v): i for i, v in enumerate(self.labels)}
        ids = [index.get(str(_plain(v)), -1) for v in values]
        unknown = sorted({str(v) for v, i in zip(values, ids) if i < 0})
        if unknown:
            from danlu.errors import DataError

            raise DataError(f"labels not seen in training: {', '.join(unknown[:10])}; known labels: "
                            f"{', '.join(map(str, self.labels))}")
        return np.asarray(ids, dtype=np.int64)

    @property
    def id2label(self) -> dict[int, str]:
        return {i: str(v) for i, v in enumerate(self.labels)}

    # -- evaluation -----------------------------------------------------------
    def metrics(self, logits: np.ndarray, label_ids: np.ndarray) -> dict:
        if self.kind == "regression":
            return regression_metrics(label_ids, logits.reshape(len(logits), -1)[:, 0])
        probs = softmax(logits)
        return classification_metrics(label_ids, probs.argmax(-1), [str(v) for v in self.labels], probs=probs)

    def trainer_metrics(self, eval_pred) -> dict:
        """Scalar metrics for Trainer's evaluation loop (early stopping, best model)."""
        logits, label_ids = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, tuple):
            logits = logits[0]
        return scalar_metrics(self.metrics(np.asarray(logits, dtype=np.float32), np.asarray(label_ids)))

    def to_json(self, logits: np.ndarray) -> list[dict]:
        if self.kind == "regression":
            return [{"value": float(v)} for v in logits.reshape(len(logits), -1)[:, 0]]
        probs = softmax(logits)
        out = []
        for row in probs:
            best = int(row.argmax())
            out.append({
                "label": self.labels[best],
                "score": round(float(row[best]), 6),
                "scores": {str(lab): round(float(p), 6) for lab, p in zip(self.labels, row)},
            })
        return out

    # -- saving ---------------------------------------------------------------
    def meta(self) -> dict:
        return {"task": self.name, "kind": self.kind, "labels": self.labels}

    def save_meta(self, out_dir: Path, **extra) -> None:
        atomic_write_json(out_dir / META_FILE, {**self.meta(), **extra})

    @staticmethod
    def read_meta(model_dir: Path) -> dict:
        return json.loads((Path(model_dir) / META_FILE).read_text())


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _plain(value):
    """numpy scalars to Python ones, so labels survive JSON and compare across splits."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@torch.no_grad()
def predict_logits(model, dataset, collate, batch_size: int = 64,
                   bf16: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits (and labels when the examples carry them) for a whole dataset, in order.

    Token sequences are batched shortest first, so a batch pads to its own length rather than to
    the longest sentence of a random 64 (SST-2: 1 to 60 tokens), then put back in dataset order.
    `bf16`: under bf16 autocast, for figures that need no fp32 precision (a teacher's soft labels).
    """
    model.eval()
    device = next(model.parameters()).device
    order = _by_length(dataset)
    source = torch.utils.data.Subset(dataset, order) if order is not None else dataset
    loader = torch.utils.data.DataLoader(source, batch_size=batch_size, shuffle=False, collate_fn=collate)
    logits, labels = [], []
    for batch in loader:
        batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        y = batch.pop("labels", None)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits.append(model(**batch).logits.float().cpu().numpy())
        if y is not None:
            labels.append(y.cpu().numpy())
    if not logits:
        return np.zeros((0, 1), dtype=np.float32), None
    logits_, labels_ = np.concatenate(logits), (np.concatenate(labels) if labels else None)
    if order is not None:
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        logits_, labels_ = logits_[back], (labels_[back] if labels_ is not None else None)
    return logits_, labels_


def _by_length(dataset) -> np.ndarray | None:
    items = getattr(dataset, "items", None)
    if not items or "input_ids" not in items[0]:
        return None
    return np.argsort([len(item["input_ids"]) for item in items], kind="stable")
