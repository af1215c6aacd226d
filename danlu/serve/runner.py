"""Runners: a loaded model behind one call, `predict(frame) -> list[dict]`.

The server only knows this interface, so a compressed variant (ONNX, int8) plugs in beside the
PyTorch model without touching the HTTP side. A runner is called from worker threads, one batch
per call; it must be safe to call from `workers_threads` threads at once.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from danlu.errors import DanluError
from danlu.run import Run

# A batch of token sequences is split (sorted by length) where padding to the longest would cost
# more than this many times the real tokens: SST-2-like text wastes ~2.3x padded as one batch of
# 32, ~1.15x in ~12 groups (measured 1.6x faster); on a CPU the forward pass costs in proportion to padded tokens.
PAD_SLACK = 1.25
MIN_GROUP = 4  # fewer rows per call and the per-call overhead eats the saving


@dataclass
class ModelInfo:
    """What /v1/models shows and what the request schema is built from."""

    name: str
    task: str
    kind: str = "classification"
    labels: list = field(default_factory=list)
    features: list[str] = field(default_factory=list)  # tabular input columns
    variant: str | None = None
    created: int = 0  # unix time the model was saved

    @classmethod
    def from_run(cls, run: Run, meta: dict, variant: str | None = None) -> "ModelInfo":
        state = run.state()
        config = run.model_dir / "config.json"
        return cls(
            name=state.get("name") or run.root.name,
            task=meta.get("task") or state.get("task", ""),
            kind=meta.get("kind", "classification"),
            labels=list(meta.get("labels") or []),
            features=list(meta.get("features") or []),
            variant=variant,
            created=int(config.stat().st_mtime) if config.exists() else 0,
        )


class Runner(ABC):
    info: ModelInfo

    @abstractmethod
    def predict(self, frame: pd.DataFrame) -> list[dict]:
        """One prediction dict per row of `frame`, in order."""


class TaskRunner(Runner):
    """task.encode -> task.collate -> logits(batch) -> task.to_json, for any network behind `logits`."""

    def __init__(self, task, logits: Callable[[dict], np.ndarray], info: ModelInfo, model=None):
        self.task, self.logits, self.info = task, logits, info
        self.model = model  # the PyTorch network itself, for routes that sample text from it (causal LMs)
        # Fast (Rust) tokenizers raise "Already borrowed" when two threads use one at once;
        # only encoding is serialised, the forward passes still overlap.
        tokenizer = getattr(task, "tokenizer", None)
        self._encode_lock = threading.Lock() if tokenizer is not None else contextlib.nullcontext()

    def predict(self, frame: pd.DataFrame) -> list[dict]:
        with self._encode_lock:
            examples = self.task.encode(frame)
            items = [examples[i] for i in range(len(examples))]
        out: list = [None] * len(items)
        for group in length_groups(items):
            with self._encode_lock:
                batch = self.task.collate([items[i] for i in group])
            batch.pop("labels", None)
            for i, prediction in zip(group, self.task.to_json(self.logits(batch))):
                out[i] = prediction
        return out


def length_groups(items: list[dict]) -> list[list[int]]:
    """Indices of `items` in groups that pad well together (one group for fixed-size inputs)."""
    if not items or "input_ids" not in items[0]:
        return [list(range(len(items)))]
    lengths = [len(item["input_ids"]) for item in items]
    groups, current, tokens = [], [], 0
    for i in sorted(range(len(items)), key=lengths.__getitem__):
        padded = (len(current) + 1) * -(-lengths[i] // 8) * 8  # collate pads to a multiple of 8
        if len(current) >= MIN_GROUP and padded > PAD_SLACK * (tokens + lengths[i]):
            groups.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += lengths[i]
    groups.append(current)
    return groups


def torch_logits(model, precision: str = "fp32") -> Callable[[dict], np.ndarray]:
    import torch

    model.eval()
    device = next(model.parameters()).device
    bf16 = precision == "bf16"

    def logits(batch: dict) -> np.ndarray:
        batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return model(**batch).logits.float().cpu().numpy()

    return logits


def load_runner(run_dir: str | Path, variant: str | None = None, precision: str = "fp32",
                threads: int | None = None) -> Runner:
    """The PyTorch model of a finished run, or its compressed variant `variant`.

    `precision`: "bf16" runs the PyTorch model under bf16 autocast (faster on CPUs with native
    bf16; scores move by about 1e-2). `threads`: intra-op threads for the model.
    """
    from danlu.tasks import Task
    from danlu.train.engine import silence_transformers

    silence_transformers()  # no "Loading weights" bars in a server log
    if threads:
        import torch

        torch.set_num_threads(threads)
    run = Run(run_dir)
    model_dir = run.require_model()
    info = ModelInfo.from_run(run, Task.read_meta(model_dir), variant=variant or None)
    if not variant:
        from danlu.tasks import load_task

        task, model = load_task(model_dir)
        return TaskRunner(task, torch_logits(model, precision), info, model=model)
    if precision != "fp32":
        raise DanluError(f"--precision {precision} applies to the PyTorch model; a variant keeps its own precision")
    try:
        from danlu.compress import load_variant
    except ImportError as exc:
        # Only a missing danlu.compress is the user's problem; a broken import inside it is a bug.
        if exc.name != "danlu.compress":
            raise
        raise DanluError(f"--variant {variant}: this danlu has no compressed variants (danlu.compress "
                         "with load_variant is missing); serve the PyTorch model without --variant") from None
    loaded = load_variant(run_dir, variant, **({"threads": threads} if threads else {}))
    if hasattr(loaded, "predict_logits") and hasattr(loaded, "task"):
        return TaskRunner(loaded.task, loaded.predict_logits, info)
    if hasattr(loaded, "predict"):  # a runner of its own: predict(frame) -> list[dict]
        return _Wrapped(loaded, info)
    raise DanluError(f"--variant {variant}: load_variant returned {type(loaded).__name__}, "
                     "which has neither predict_logits(batch) nor predict(frame)")


class _Wrapped(Runner):
    def __init__(self, inner, info: ModelInfo):
        self.inner, self.info = inner, info

    def predict(self, frame: pd.DataFrame) -> list[dict]:
        return list(self.inner.predict(frame))
