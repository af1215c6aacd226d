"""The contract every task fulfils: the stages call these methods and never ask which task it is.

A task is built one way, by the registry (`danlu.tasks.new_task`), whether it is about to be
trained or loaded: `Task(spec, recipe)`. Then either
    train: setup(train frame) -> build_model() -> encode -> collate -> the engine -> save(model, dir)
    load:  load(dir) -> the model, with every fitted piece (labels, tokenizer, scaler) restored
and in both cases evaluate / to_json / predict / the serve schemas / report sections / baseline.

The optional hooks are declared here with their defaults; a task overrides what it has.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from danlu.errors import DanluError
from danlu.run import atomic_write_json

META_FILE = "danlu.json"


@dataclass
class Sample:
    """A task's own tiny synthetic data set (registry `sample`): the frame as the data stage would hand
    it over (role columns, feature columns), and the recipe keys of a model that learns it in seconds."""

    frame: pd.DataFrame
    recipe: dict
    features: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)


class Task(ABC):
    # A transformer (bf16 and compile pay off in the engine) or a small classic net.
    large_model = False
    # Variable-length inputs: the engine batches similar lengths together.
    group_by_length = False
    # "trainer": transformers.Trainer; "loop": danlu's plain loop (danlu.train.loop), for models the
    # Trainer's machinery only slows down (its imports alone outweigh a small MLP's whole training).
    engine = "trainer"
    # A fast (Rust) tokenizer raises "Already borrowed" when two threads encode at once.
    encodes_thread_safely = True
    # The Trainer's evaluation loop gathers every logit of the split; a language model measures its
    # loss only (no full-vocabulary logits), so it turns this off.
    metrics_in_trainer = True
    # One prediction per row of the frame `predict` gets; a forecaster reads the whole frame as one
    # history and answers once.
    frame_is_one_input = False

    def __init__(self, spec, recipe=None):
        self.spec = spec
        self.recipe = recipe

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    # -- training ----------------------------------------------------------------------
    @abstractmethod
    def setup(self, train: pd.DataFrame, features: list[str] = (), categorical: list[str] = ()) -> None:
        """Fit what the model reads its input with (labels, tokenizer, scaler) on the training split."""

    @abstractmethod
    def build_model(self):
        """The model to train: from the recipe's named size, or its pretrained checkpoint."""

    @abstractmethod
    def encode(self, frame: pd.DataFrame, train: bool = False):
        """A Dataset of examples for the rows of `frame`; `train`: the training split (a task may
        read it differently, e.g. random windows of a corpus)."""

    @abstractmethod
    def collate(self, items: list[dict]) -> dict:
        """A batch of tensors for the model's forward."""

    # -- measuring and predicting --------------------------------------------------------
    @abstractmethod
    def evaluate(self, forward, dataset) -> dict:
        """The task's metrics on one encoded split, through `forward` (danlu.inference)."""

    @abstractmethod
    def metrics(self, outputs, label_ids) -> dict:
        """The task's metrics from outputs already computed (a compressed variant's)."""

    @abstractmethod
    def to_json(self, outputs) -> list[dict]:
        """One JSON object per example, valid against `response_item()`."""

    def predict(self, forward, frame: pd.DataFrame, batch_size: int = 64, lock=None) -> list[dict]:
        """Predictions for raw rows, through the one inference path."""
        from danlu.inference import predict_rows

        return predict_rows(self, forward, frame, batch_size, lock=lock)

    def tune_decision(self, forward, validation) -> dict | None:
        """After training: fit what decides a prediction from the model's outputs on the validation split
        (a two-class threshold); the decision made, or None."""
        return None

    def trainer_metrics(self, eval_pred) -> dict:
        """Scalar metrics for the engine's evaluation loop (early stopping, best model)."""
        import numpy as np

        from danlu.evaluate.metrics import scalar_metrics

        logits, label_ids = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, tuple):
            logits = logits[0]
        return scalar_metrics(self.metrics(np.asarray(logits, dtype=np.float32), np.asarray(label_ids)))

    @abstractmethod
    def baseline(self, frames: dict[str, pd.DataFrame], splits: list[str]) -> dict:
        """{split: {baseline name: scalar metrics}}: the simplest honest alternatives to the model,
        fitted on frames["train"] and measured like the model on each of `splits`."""

    def baseline_names(self) -> dict[str, str]:
        """baseline name -> what it is, for the report."""
        return {}

    # -- inputs from outside -------------------------------------------------------------
    @abstractmethod
    def frame_from_value(self, value: str) -> pd.DataFrame:
        """`danlu predict RUN VALUE` where VALUE is not a file of rows: one row to predict."""

    @abstractmethod
    def request_item(self) -> Any:
        """The type of one input of POST /v1/predict (pydantic validates the body with it)."""

    @abstractmethod
    def rows_from_request(self, inputs: list) -> list[dict]:
        """Validated request inputs -> rows of the frame `predict` reads."""

    @abstractmethod
    def response_item(self) -> type[BaseModel]:
        """The schema of one prediction (what to_json returns, what the server answers)."""

    def card(self) -> dict:
        """What GET /v1/models shows about the model besides its name."""
        return {"task": self.name, "kind": self.kind}

    # -- reporting -----------------------------------------------------------------------
    def notes(self) -> list[str]:
        """What the task chose or found that the user should know (an inferred input size, a tokenizer
        that does not fit the text), shown on the console and in the report."""
        return []

    def input_facts(self) -> dict:
        """What the model reads, for the report: tokenizer and vocabulary, features and encoded width."""
        return {}

    def report_sections(self, metrics: dict) -> list:
        """The task's own report sections [(heading, [blocks])] from metrics.json (danlu.report)."""
        return []

    def after_training(self, model, frames: dict[str, pd.DataFrame]) -> tuple[dict, list]:
        """Extra (metrics, report sections) a task makes from the trained model (text samples)."""
        return {}, []

    # -- hooks of some tasks ---------------------------------------------------------------
    def pretrain(self, objective: str, train: pd.DataFrame, out: Path, say, callbacks=()) -> dict:
        """Self-supervised pretraining into out/model (the capability `pretrain` names the objectives)."""
        raise DanluError(f"{self.name} has no self-supervised pretraining objectives")

    def generate(self, model, prompt: str, **options):
        """Text continuing `prompt`, in pieces (the capability `generate`)."""
        raise DanluError(f"a {self.name} run does not write text; generation needs a task that does")

    def chat_prompt(self, messages: list[dict]) -> str:
        """The prompt the model continues for chat `messages` ({role, content}) (capability `generate`)."""
        raise DanluError(f"a {self.name} run does not write text, so it cannot chat")

    def join_outputs(self, parts: list):
        """One array of the outputs of several batches (in batch order); a task whose outputs vary in
        length between batches (CTC frames) pads them here."""
        import numpy as np

        return np.concatenate(parts)

    def attribution_units(self, batch: dict) -> list[list[tuple[str, list[int]]]] | None:
        """What an explanation reads the gradient input's attributions in (capability `gradient_input`): per
        example of a collated batch, (name, positions along axis 1) for each unit, such as a text's tokens or
        a table's features (a category's one-hot columns together); None: a grid (pixels), read as a map."""
        return None

    # Inputs whose axis 1 varies between batches (besides token ids): the ONNX export keeps it dynamic.
    sequence_inputs: tuple[str, ...] = ()

    def export_graph(self, proto):
        """The ONNX graph `danlu export` writes: the network's, with any preprocessing the task does
        outside the network put in front of it, so the file needs nothing of danlu."""
        return proto

    def export_feeds(self, frame: pd.DataFrame) -> dict:
        """What plain onnxruntime feeds the exported graph for the rows of `frame`."""
        dataset = self.encode(frame)
        batch = self.collate([dataset[i] for i in range(len(dataset))])
        batch.pop("labels", None)
        return {k: v.numpy() if hasattr(v, "numpy") else v for k, v in batch.items()}

    # -- saving --------------------------------------------------------------------------
    @abstractmethod
    def save(self, model, out_dir: Path) -> None:
        """The model and everything needed to use it, in one folder (Hugging Face layout)."""

    @abstractmethod
    def load(self, model_dir: Path):
        """The saved model, with this task's fitted state restored from `model_dir`."""

    def save_meta(self, out_dir: Path, **extra) -> None:
        atomic_write_json(Path(out_dir) / META_FILE, {"task": self.name, "kind": self.kind, **extra})


def read_meta(model_dir: Path) -> dict:
    path = Path(model_dir) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DanluError(f"{model_dir}: no {META_FILE}; not a model saved by danlu") from None
    except (OSError, ValueError) as exc:
        raise DanluError(f"{path}: cannot be read ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("task"), str):
        raise DanluError(f"{path}: does not name the model's task")
    return meta
