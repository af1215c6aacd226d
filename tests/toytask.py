"""A toy task registered from outside danlu/: "toy-length" says whether a text is short or long.

It touches no file under danlu/: its spec, section, model and sample data all live here, and the
stages find it through the registry alone (tests/test_toy_task.py drives it end to end).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from danlu.recipe.sections import Section
from danlu.registry import Capabilities, TaskSpec, register
from danlu.tasks.base import Sample, Task, read_meta
from danlu.tasks.classifier import Classifier
from danlu.train.examples import Examples

NAME = "toy-length"


class ToyConfig(Section):
    """The task's own recipe section: `toy: {scale: 10}`."""

    scale: float = Field(default=10.0, gt=0)


class ToyNet(nn.Module):
    """Two classes from one feature, the text's length over `scale`."""

    main_input_name = "inputs"

    def __init__(self, scale: float = 10.0):
        super().__init__()
        self.scale = scale
        self.linear = nn.Linear(1, 2)

    def forward(self, inputs, labels=None, **_):
        logits = self.linear(inputs / self.scale)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}

    def save_pretrained(self, folder, **_):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), folder / "toy.pt")
        (folder / "config.json").write_text(json.dumps({"model_type": "toy", "scale": self.scale}))


class ToyTask(Classifier, Task):
    engine = "loop"

    def setup(self, train, features=(), categorical=()):
        self.fit_labels(train["label"])

    def build_model(self):
        return ToyNet(self.recipe.toy.scale)

    def encode(self, frame, train=False):
        lengths = frame["text"].astype(str).str.len().to_numpy(np.float32)
        y = self.label_ids(frame["label"]) if "label" in frame else None
        return Examples([{"inputs": [lengths[i]], **({"labels": int(y[i])} if y is not None else {})}
                         for i in range(len(frame))])

    def collate(self, items):
        out = {"inputs": torch.tensor([item["inputs"] for item in items], dtype=torch.float32)}
        if "labels" in items[0]:
            out["labels"] = torch.tensor([item["labels"] for item in items])
        return out

    def baseline_features(self, train, frames):
        def length(frame):
            return frame["text"].astype(str).str.len().to_numpy(np.float32)[:, None]

        return length(train), {split: length(frame) for split, frame in frames.items()}

    def baseline_names(self):
        return {"majority": "the most frequent class", "linear": "logistic regression on the length"}

    def frame_from_value(self, value):
        return pd.DataFrame({"text": [value]})

    def request_item(self):
        return str

    def rows_from_request(self, inputs):
        return [{"text": value} for value in inputs]

    def report_sections(self, metrics):
        return [("Toy", [("text", f"{len(self.labels)} classes by length")])] + super().report_sections(metrics)

    def save(self, model, out_dir):
        model.save_pretrained(out_dir)
        self.save_meta(out_dir, labels=self.labels)

    def load(self, model_dir):
        self.labels = read_meta(model_dir)["labels"]
        config = json.loads((Path(model_dir) / "config.json").read_text())
        model = ToyNet(config["scale"])
        model.load_state_dict(torch.load(Path(model_dir) / "toy.pt", weights_only=True))
        return model.eval()


def toy_sample(rows: int = 60, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    texts = ["x" * int(n) for n in rng.integers(1, 40, size=rows)]
    labels = ["long" if len(t) > 20 else "short" for t in texts]
    return Sample(pd.DataFrame({"text": texts, "label": labels}),
                  {"train": {"epochs": 30, "batch_size": 8, "optimizer": "adam", "lr": 0.1, "progress": False}})


SPEC = TaskSpec(
    name=NAME, kind="classification", task_class="toytask:ToyTask", roles=("text", "label"), input_roles=("text",),
    main_metric="accuracy", greater_is_better=True,
    metrics=("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted", "recall_weighted",
             "f1_weighted", "roc_auc", "roc_auc_ovr", "loss"),
    summary="a text -> short or long (a toy registered from tests/)", sample="toytask:toy_sample",
    sections={"toy": ToyConfig}, capabilities=Capabilities(cross_validation=True, class_balance=True),
)
SPECS = (SPEC,)


def install() -> TaskSpec:
    return register(SPEC, replace=True)
