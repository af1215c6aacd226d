"""How much memory and time a training will take, before it runs: `danlu estimate` and `danlu train --estimate`.

- Weights: accelerate's estimator (`calculate_maximum_sizes`), the model's own parameters and buffers.
- Gradients: one fp32 value per trained parameter (frozen layers and LoRA's frozen base have none).
- Optimizer state: fp32 values per trained parameter, by optimizer (Adam/AdamW two, momentum and
  Adagrad one, SGD none).
- Activations: measured, not modelled: one forward of the recipe's largest batch (its longest
  examples, at the recipe's batch size and precision) with a hook that sums the tensors autograd saves
  for the backward pass; that is what a step holds at its peak on top of the three above.
- Time: a probe of a few real optimizer steps on this machine (the first ones, which warm caches,
  are not counted), and a forward of an evaluation batch; scaled by the steps and evaluation batches
  of an epoch. A figure for this machine only.

The probe trains a copy: the model it is given is left as it was.
"""

from __future__ import annotations

import copy
import math
import random
import statistics
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch

from danlu.train.examples import item_length
from danlu.train.fitting import choose_precision, make_optimizer
from danlu.train.memory import PeakMemory, weight_bytes

OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "adagrad": 1, "adam": 2, "adamw": 2}
FP32 = 4
GIB = 1024 ** 3


@dataclass
class Estimate:
    parameters: int
    trainable: int
    weights: int  # bytes
    gradients: int
    optimizer: int
    activations: int
    transient: int  # what the probe's steps held above the four parts (backward buffers, kernels' scratch)
    precision: str
    batch_size: int
    sequence: int | None  # tokens (or frames) per example of the largest batch; None for fixed-size inputs
    step_seconds: float
    eval_seconds: float  # one pass over the evaluation split
    steps_per_epoch: int
    planned_steps: int
    evaluations: int  # passes over the evaluation split in the whole run
    probe_steps: int

    @property
    def memory(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.transient

    @property
    def epochs(self) -> float:
        return self.planned_steps / max(self.steps_per_epoch, 1)

    @property
    def run_seconds(self) -> float:
        return self.step_seconds * self.planned_steps + self.eval_seconds * self.evaluations

    @property
    def epoch_seconds(self) -> float:
        """The run's time over its epochs: an epoch's steps and its share of the evaluations."""
        return self.run_seconds / self.epochs

    def to_dict(self) -> dict:
        return {**asdict(self), "memory": self.memory, "epochs": self.epochs, "epoch_seconds": self.epoch_seconds,
                "run_seconds": self.run_seconds}


def estimate_training(model, train_ds, collate, cfg, large_model: bool, eval_ds=None, probe_steps: int = 5,
                      warmup_steps: int = 2, group_by_length: bool = False) -> Estimate:
    """The figures for training `model` on `train_ds` with the recipe's train section `cfg`."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    precision = choose_precision(cfg.precision, large_model)
    batch = _largest_batch(train_ds, collate, cfg.batch_size)
    sequence = _sequence(batch)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    probe = copy.deepcopy(model).to(device)
    batch = _to(batch, device)
    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()

    activations = _saved_bytes(probe, batch, autocast)
    # Time on batches drawn at random, as training sees them (the largest one would overstate it).
    # Batching is timed too (collate and the copy to the device), as the engines pay it every step.
    drawn = [_draw(train_ds, cfg.batch_size, cfg.seed + i, group_by_length) for i in range(warmup_steps + probe_steps)]
    # The peak of the probe's own steps, measured like the training's (danlu.train.memory), shows what
    # the four parts miss: the backward pass's transient buffers, the kernels' workspaces.
    with PeakMemory(probe) as peak:
        step_seconds = _step_seconds(probe, drawn, collate, device, cfg, autocast, warmup_steps)
    eval_seconds = _eval_seconds(probe, eval_ds, collate, cfg, autocast, device) if eval_ds is not None else 0.0
    updates = max(math.ceil(math.ceil(len(train_ds) / cfg.batch_size) / cfg.grad_accum), 1)
    planned = cfg.max_steps or math.ceil(cfg.epochs * updates)
    evaluations = 0
    if eval_ds is not None and len(eval_ds):
        evaluations = math.ceil(planned / updates) if cfg.eval_every == "epoch" else planned // cfg.eval_every
    del probe
    weights, gradients = _weights(model), trainable * FP32
    optimizer = trainable * FP32 * OPTIMIZER_STATES[cfg.optimizer]
    parts = weights + gradients + optimizer + activations
    return Estimate(
        parameters=total, trainable=trainable, weights=weights, gradients=gradients, optimizer=optimizer,
        activations=activations, transient=max(0, (peak.bytes or 0) - parts),
        precision=precision, batch_size=cfg.batch_size, sequence=sequence,
        # grad_accum batches make one optimizer step
        step_seconds=step_seconds * cfg.grad_accum, eval_seconds=eval_seconds, steps_per_epoch=updates,
        planned_steps=planned, evaluations=evaluations, probe_steps=probe_steps)


def _weights(model) -> int:
    try:
        from accelerate.utils import calculate_maximum_sizes

        return int(calculate_maximum_sizes(model)[0])
    except Exception:  # a module accelerate cannot walk: count it ourselves
        return weight_bytes(model)


def _largest_batch(dataset, collate, batch_size: int) -> dict:
    """The batch_size longest examples (padding makes the longest batch the costliest), else the first."""
    n = len(dataset)
    order = list(range(min(n, batch_size)))
    # Fixed-size inputs (images, table rows) need no search, nor the decoding of every example.
    if n and item_length(dataset[0]) is not None:
        lengths = [item_length(dataset[i]) or 0 for i in range(min(n, 20000))]
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])[:batch_size]
    return collate([dataset[i] for i in order])


def _sequence(batch: dict) -> int | None:
    for key in ("input_ids", "input_features", "input_values"):
        value = batch.get(key)
        if torch.is_tensor(value) and value.dim() >= 2:
            return int(value.shape[1])
    return None


def _loss(model, batch, autocast):
    with autocast():
        out = model(**batch)
    return out["loss"] if isinstance(out, dict) or hasattr(out, "keys") else out[0]


def _saved_bytes(model, batch, autocast) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one step (each storage once;
    parameters are not activations)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params:
            seen[ptr] = max(seen.get(ptr, 0), storage.nbytes())
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = _loss(model, batch, autocast)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values())


def _draw(dataset, batch_size: int, seed: int, group_by_length: bool = False) -> list:
    """A batch as training draws one: at random, or (length-bucketed text) of neighbours in length."""
    rng = random.Random(seed)
    if not group_by_length:
        return [dataset[rng.randrange(len(dataset))] for _ in range(batch_size)]
    # LengthBucketSampler sorts windows of 50 batches by length: a batch is a run of neighbours there.
    window = [rng.randrange(len(dataset)) for _ in range(min(len(dataset), 50 * batch_size))]
    window.sort(key=lambda i: item_length(dataset[i]) or 0)
    start = rng.randrange(max(1, len(window) - batch_size + 1))
    return [dataset[i] for i in window[start:start + batch_size]]


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _step_seconds(model, drawn: list, collate, device, cfg, autocast, warmup: int) -> float:
    optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum, (0.9, cfg.beta2))
    times = []
    model.train()
    for i, items in enumerate(drawn):
        start = time.perf_counter()
        batch = _to(collate(items), device)
        loss = _loss(model, batch, autocast)
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _eval_seconds(model, eval_ds, collate, cfg, autocast, device) -> float:
    n = len(eval_ds)
    if not n:
        return 0.0
    size = cfg.eval_batch_size or max(cfg.batch_size, 64)
    batch = _to(collate([eval_ds[i] for i in range(min(n, size))]), device)
    model.eval()
    times = []
    with torch.no_grad():
        for _ in range(3):
            start = time.perf_counter()
            _loss(model, batch, autocast)
            times.append(time.perf_counter() - start)
    per_example = min(times) / min(n, size)
    return per_example * n


def mb(n: float) -> str:
    """Bytes in the unit that shows them best."""
    if n < 1024 ** 2:
        return f"{n / 1024:,.1f} KB"
    if n < GIB:
        return f"{n / 1024 ** 2:,.1f} MB"
    return f"{n / GIB:,.2f} GB"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def rows(est: Estimate, device=None, cost_per_hour: float | None = None) -> list[tuple[str, str]]:
    """The figures as (what, value) rows, for the console and the report alike; `device` (name and
    memory in bytes) adds whether it fits."""
    found = [
        ("parameters", f"{est.parameters:,} ({est.trainable:,} trained)"),
        ("precision", est.precision),
        ("batch", f"{est.batch_size}" + (f" x {est.sequence} tokens (the longest batch)" if est.sequence else "")),
        ("weights", mb(est.weights)),
        ("gradients", mb(est.gradients)),
        ("optimizer state", mb(est.optimizer)),
        ("activations", mb(est.activations)),
        ("transient (probe's peak)", mb(est.transient)),
        ("memory per device", mb(est.memory)),
        ("time per step (this machine)", f"{est.step_seconds * 1000:,.1f} ms"),
        ("time per epoch (this machine)", f"{duration(est.epoch_seconds)} ({est.steps_per_epoch:,} steps and "
                                          f"{est.evaluations / est.epochs:.2g} evaluations)"),
        ("whole run (this machine)", f"{duration(est.run_seconds)} ({est.planned_steps:,} steps at most)"),
    ]
    if device is not None:
        found.insert(9, ("fits " + device.name, f"{'yes' if est.memory <= device.memory else 'NO'} "
                         f"({100 * est.memory / device.memory:.1f}% of {device.memory / GIB:,.0f} GiB)"))
    if cost_per_hour is not None:
        found.append(("cost", f"{est.run_seconds / 3600 * cost_per_hour:,.2f} at {cost_per_hour:g} per hour"))
    return found
