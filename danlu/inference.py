"""The one inference path: rows -> encoded examples -> batches -> any model form -> outputs in input order.

`danlu predict`, `danlu eval`, the evaluation after training, the server and the compress measurements
all call it; only the `Forward` differs: a PyTorch model (fp32, bf16 autocast, a pruned or int8
copy) or an ONNX Runtime session.

Token sequences are batched by length: SST-2-like text wastes ~2.3x padded as one batch of 32 and
~1.15x in length groups, and on a CPU the forward pass costs in proportion to padded tokens.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from danlu.errors import DanluError

# A length-sorted group is cut where padding it to its longest row would cost more than this many
# times its real tokens (measured on SST-2 at batch 32: 1.6x faster than one padded batch).
PAD_SLACK = 1.25
MIN_GROUP = 4  # fewer rows per call and the per-call overhead eats the saving


class Forward(ABC):
    """One collated batch in, the model's outputs (logits, or the task's equivalent) out, as numpy."""

    model = None  # the PyTorch network, when there is one (text generation samples from it)

    @abstractmethod
    def __call__(self, batch: dict) -> np.ndarray:
        """Outputs for one batch, one row per example."""


class TorchForward(Forward):
    def __init__(self, model, precision: str = "fp32"):
        import torch

        self.model = model.eval()
        # A dynamically quantized MLP keeps its weights as packed buffers: it may have no parameters.
        first = next(iter(model.parameters()), None)
        self.device = first.device if first is not None else torch.device("cpu")
        self.bf16 = precision == "bf16"
        self._torch = torch

    def __call__(self, batch: dict) -> np.ndarray:
        torch = self._torch
        batch = {k: (torch.as_tensor(v).to(self.device) if isinstance(v, (np.ndarray, torch.Tensor)) else v)
                 for k, v in batch.items() if k != "labels"}
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model(**batch)["logits"].float().cpu().numpy()  # ModelOutput and dict alike


class OnnxForward(Forward):
    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        # The exporter may drop an input the graph never reads: feed only what the graph declares.
        self.inputs = {i.name: (np.int64 if "int64" in i.type else np.float32) for i in self.session.get_inputs()}

    def __call__(self, batch: dict) -> np.ndarray:
        feeds = {name: _numpy(batch[name], dtype) for name, dtype in self.inputs.items()}
        return self.session.run(None, feeds)[0]


def _numpy(value, dtype) -> np.ndarray:
    if hasattr(value, "numpy"):
        value = value.numpy()
    return np.ascontiguousarray(value, dtype=dtype)


def torch_forward(model, precision: str = "fp32") -> TorchForward:
    """`precision` "auto": bf16 where the hardware computes it natively, else fp32."""
    if precision == "auto":
        from danlu.train.fitting import choose_precision

        precision = choose_precision("auto", large_model=True)
    return TorchForward(model, precision)


# -- batching -----------------------------------------------------------------------


def groups(items: list[dict], batch_size: int) -> list[list[int]]:
    """Indices of `items` in batches of at most `batch_size`: shortest first for token sequences (cut
    where padding would waste more than PAD_SLACK), in order for fixed-size inputs."""
    if not items:
        return []
    from danlu.train.examples import item_length

    lengths = [item_length(item) for item in items]
    if lengths[0] is None:
        return [list(range(i, min(i + batch_size, len(items)))) for i in range(0, len(items), batch_size)]
    out, current, alone = [], [], 0
    for i in sorted(range(len(items)), key=lengths.__getitem__):
        # collate pads to a multiple of 8, so that much padding is paid even by a sequence alone
        own = -(-lengths[i] // 8) * 8
        if current and (len(current) >= batch_size or
                        (len(current) >= MIN_GROUP and (len(current) + 1) * own > PAD_SLACK * (alone + own))):
            out.append(current)
            current, alone = [], 0
        current.append(i)
        alone += own
    out.append(current)
    return out


def batches(task, dataset, size: int, indices=None) -> tuple[list[dict], np.ndarray | None]:
    """Collated batches of `dataset` in order (labels taken out), and the labels in the same order."""
    order = list(range(len(dataset))) if indices is None else list(indices)
    out, labels = [], []
    for start in range(0, len(order), size):
        batch = task.collate([dataset[i] for i in order[start:start + size]])
        y = batch.pop("labels", None)
        if y is not None:
            labels.append(np.asarray(y))
        out.append(batch)
    return out, (task.join_outputs(labels) if labels else None)


def outputs(task, forward: Forward, dataset, batch_size: int = 64,
            lock=None) -> tuple[np.ndarray, np.ndarray | None]:
    """The outputs (and labels, when the examples carry them) for every example, in dataset order.

    `lock`: held while collating (a fast tokenizer raises "Already borrowed" when two threads use it
    at once); the forward passes still overlap.
    """
    guard = lock if lock is not None else nullcontext()
    items = dataset.items if hasattr(dataset, "items") else [dataset[i] for i in range(len(dataset))]
    parts, labels, order = [], [], []
    for group in groups(items, batch_size):
        with guard:
            batch = task.collate([items[i] for i in group])
        y = batch.pop("labels", None)
        parts.append(np.asarray(forward(batch)))
        if y is not None:
            labels.append(np.asarray(y))
        order += group
    if not parts:
        return np.zeros((0, 1), dtype=np.float32), None
    back = np.empty(len(order), dtype=np.int64)
    back[np.asarray(order)] = np.arange(len(order))
    out = task.join_outputs(parts)[back]
    return out, (task.join_outputs(labels)[back] if labels else None)


def require_finite(values: np.ndarray) -> np.ndarray:
    """Non-finite outputs are the model's failure, reported as such, never shown as NaN scores."""
    flat = values.reshape(len(values), -1) if len(values) else values
    bad = ~np.isfinite(flat).all(axis=1) if len(values) else np.zeros(0, bool)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DanluError(f"the model's outputs are not finite (NaN or inf) for {len(rows):,} of {len(values):,} "
                         f"inputs (the first: input {int(rows[0])}); the model or the input is broken")
    return values


def predict_rows(task, forward: Forward, frame, batch_size: int = 64, lock=None) -> list[dict]:
    """JSON predictions for the rows of `frame`, in order."""
    guard = lock if lock is not None else nullcontext()
    with guard:
        dataset = task.encode(frame)
    values, _ = outputs(task, forward, dataset, batch_size, lock=lock)
    return task.to_json(require_finite(values))


def encode_lock(task):
    """A lock for tasks whose encoding is not thread-safe (a fast tokenizer), else None."""
    return threading.Lock() if getattr(task, "tokenizer", None) is not None else None
