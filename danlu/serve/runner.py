"""Runners: a loaded model behind one call, `predict(frame) -> list[dict]`.

The server only knows this interface. A runner is the run's task and a `Forward` (danlu.inference):
the PyTorch model, or a compressed variant (ONNX, int8, pruned), so every form predicts through the
same inference path. It is called from worker threads, one batch per call, and is safe to call from
`workers_threads` threads at once (encoding is serialised for tasks whose tokenizer is not).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from danlu.compress import BASELINE as BASELINE_VARIANT
from danlu.errors import DanluError
from danlu.inference import Forward
from danlu.run import Run


@dataclass
class ModelInfo:
    """What /v1/models shows."""

    name: str
    task: str
    card: dict = field(default_factory=dict)  # the task's own facts: kind, labels, features, input
    variant: str | None = None
    created: int = 0  # unix time the model was saved
    chosen_by: str | None = None  # "danlu match" when the variant comes from the deployment plan

    @classmethod
    def from_run(cls, run: Run, task, variant: str | None = None, chosen_by: str | None = None) -> "ModelInfo":
        config = run.model_dir / "config.json"
        return cls(name=run.state().get("name") or run.root.name, task=task.name, card=task.card(),
                   variant=variant, created=int(config.stat().st_mtime) if config.exists() else 0,
                   chosen_by=chosen_by)


class TaskRunner:
    def __init__(self, task, forward: Forward, info: ModelInfo):
        self.task, self.forward, self.info = task, forward, info
        self._lock = None if task.encodes_thread_safely else threading.Lock()

    @property
    def model(self):
        """The PyTorch network, for routes that sample text from it (None for an ONNX variant)."""
        return self.forward.model

    @property
    def encode_lock(self):
        """Held while encoding, for tasks whose encoding is not thread-safe (None otherwise): routes that
        encode beside predict (explanations) share it."""
        return self._lock

    def predict(self, frame: pd.DataFrame) -> list[dict]:
        """One prediction dict per row of `frame`, in order."""
        return self.task.predict(self.forward, frame, batch_size=max(len(frame), 1), lock=self._lock)


def load_runner(run_dir: str | Path, variant: str | None = None, precision: str = "fp32",
                threads: int | None = None) -> TaskRunner:
    """The model of a finished run: `variant` when named; else the variant `danlu match` chose, when a
    deployment plan exists; else the PyTorch model.

    `precision`: "bf16" runs the PyTorch model under bf16 autocast (faster on CPUs with native bf16;
    scores move by about 1e-2). `threads`: intra-op threads for the model.
    """
    from danlu.inference import torch_forward
    from danlu.tasks import load_task
    from danlu.train import silence_transformers

    silence_transformers()  # no "Loading weights" bars in a server log
    if threads:
        import torch

        torch.set_num_threads(threads)
    run = Run(run_dir)
    model_dir = run.require_model()
    chosen_by = None
    if variant is None:
        plan = run.deployment()
        if plan and plan.get("variant"):
            variant, chosen_by = plan["variant"], "danlu match"
    if variant in (None, BASELINE_VARIANT):
        task, model = load_task(model_dir)
        return TaskRunner(task, torch_forward(model, precision), ModelInfo.from_run(run, task, variant, chosen_by))
    if precision != "fp32":
        raise DanluError(f"--precision {precision} applies to the PyTorch model; a variant keeps its own precision")
    from danlu.compress.runtime import load_variant

    loaded = load_variant(run_dir, variant, threads=threads)
    return TaskRunner(loaded.task, loaded.forward, ModelInfo.from_run(run, loaded.task, variant, chosen_by))
