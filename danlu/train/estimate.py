"""How much memory and time a training will take, before it runs: `danlu estimate` and `danlu train --estimate`.

- Weights: accelerate's estimator (`calculate_maximum_sizes`), the model's own parameters and buffers.
- Gradients: one fp32 value per trained parameter (frozen layers and LoRA's frozen base have none).
- Optimizer state: fp32 values per trained parameter, by optimizer (Adam/AdamW two, momentum and
  Adagrad one, SGD none).
- Activations: measured, not modelled: one forward of the recipe's largest batch (its longest
  examples, at the recipe's batch size and precision) with a hook that sums the tensors autograd saves
  for the backward pass; that is what a step holds at its peak on top of the three above.
- A run has three kinds of moment, each measured on the probe's copy as the training is
  (danlu.train.memory): a training step (the four parts, plus what the probe's steps held above them:
  the backward pass's transient buffers, kernels' workspaces, the allocator's share); an evaluation
  pass (a no-grad forward of the largest evaluation batch while the weights and optimizer state stay:
  at a large evaluation batch the logits over the vocabulary at every position and the attention
  scores are tens of MB); a checkpoint (safetensors serialises the weights into one buffer before
  writing it). On a GPU PyTorch's caching allocator hands the blocks one moment freed to the next,
  so the peak is the largest moment. On a CPU glibc's malloc keeps the pages a step freed in its
  heap, and the evaluation's and the checkpoint's buffers (other sizes, allocated later) land on new
  pages above them: the run's resident peak is the step's plus the other two moments' own buffers
  (benchmarks/scale_phases.py shows it phase by phase).
- Time: a probe of a few real optimizer steps on this machine, each from fetching its examples to the
  optimizer's update; the first ones, which warm caches, count once for the run as its start-up. Then
  a forward of an evaluation batch and a checkpoint written, timed; scaled by the steps, evaluations
  and checkpoints of the run. A figure for this machine only.

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
    evaluation: int  # a no-grad forward of the evaluation batch, above the weights (0 without an evaluation split)
    checkpoint: int  # writing a checkpoint, above the weights
    precision: str
    device: str  # "cpu" or "cuda": how the allocator's moments add up
    batch_size: int
    sequence: int | None  # tokens (or frames) per example of the largest batch; None for fixed-size inputs
    step_seconds: float
    eval_seconds: float  # one pass over the evaluation split
    startup_seconds: float  # the first steps' time above the median: once per run
    checkpoint_seconds: float  # writing one checkpoint (the weights and the optimizer state)
    checkpoints: int  # checkpoints written in the whole run
    log_seconds: float  # rewriting history.json at each log entry, the whole run
    logs: int
    steps_per_epoch: int
    planned_steps: int
    evaluations: int  # passes over the evaluation split in the whole run
    probe_steps: int

    @property
    def step_memory(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.transient

    @property
    def evaluation_memory(self) -> int:
        # gradients are freed (set to None) after each update, before an evaluation runs
        return self.weights + self.optimizer + self.evaluation

    @property
    def checkpoint_memory(self) -> int:
        return self.weights + self.optimizer + self.checkpoint

    @property
    def memory(self) -> int:
        """The run's peak: the largest moment on a GPU; on a CPU the step's, with the buffers of an
        evaluation and a checkpoint on pages of their own."""
        if self.device == "cuda":
            return max(self.step_memory, self.evaluation_memory, self.checkpoint_memory)
        return self.step_memory + self.evaluation + self.checkpoint

    @property
    def epochs(self) -> float:
        return self.planned_steps / max(self.steps_per_epoch, 1)

    @property
    def run_seconds(self) -> float:
        return (self.startup_seconds + self.step_seconds * self.planned_steps + self.eval_seconds * self.evaluations
                + self.checkpoint_seconds * self.checkpoints + self.log_seconds)

    @property
    def epoch_seconds(self) -> float:
        """The run's time over its epochs: an epoch's steps and its share of the evaluations."""
        return self.run_seconds / self.epochs

    def to_dict(self) -> dict:
        return {**asdict(self), "memory": self.memory, "step_memory": self.step_memory,
                "evaluation_memory": self.evaluation_memory, "checkpoint_memory": self.checkpoint_memory,
                "epochs": self.epochs, "epoch_seconds": self.epoch_seconds, "run_seconds": self.run_seconds}


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
        times, optimizer = _step_times(probe, drawn, train_ds, collate, device, cfg, autocast)
    step_seconds = statistics.median(times[warmup_steps:] or times)
    startup = sum(max(0.0, t - step_seconds) for t in times[:warmup_steps])
    evaluation, eval_seconds = _evaluation(probe, eval_ds, collate, cfg, autocast, device)
    checkpoint, checkpoint_seconds = _checkpoint(probe, optimizer)
    del optimizer
    updates = max(math.ceil(math.ceil(len(train_ds) / cfg.batch_size) / cfg.grad_accum), 1)
    planned = cfg.max_steps or math.ceil(cfg.epochs * updates)
    evaluations = 0
    if eval_ds is not None and len(eval_ds):
        evaluations = _occasions(planned, updates, cfg.eval_every)
    logs = planned // cfg.log_every + evaluations
    del probe
    weights, gradients = _weights(model), trainable * FP32
    optimizer = trainable * FP32 * OPTIMIZER_STATES[cfg.optimizer]
    parts = weights + gradients + optimizer + activations
    return Estimate(
        parameters=total, trainable=trainable, weights=weights, gradients=gradients, optimizer=optimizer,
        activations=activations, transient=max(0, (peak.bytes or 0) - parts), evaluation=evaluation,
        checkpoint=checkpoint, precision=precision, device=device.type, batch_size=cfg.batch_size, sequence=sequence,
        # grad_accum batches make one optimizer step
        step_seconds=step_seconds * cfg.grad_accum, eval_seconds=eval_seconds, startup_seconds=startup,
        log_seconds=_log_seconds(logs) * logs, logs=logs,
        checkpoint_seconds=checkpoint_seconds, checkpoints=_occasions(planned, updates, cfg.checkpoint_every),
        steps_per_epoch=updates, planned_steps=planned, evaluations=evaluations, probe_steps=probe_steps)


def _occasions(planned: int, updates: int, every) -> int:
    """How many evaluations (checkpoints) `every` (steps, or "epoch") makes in `planned` steps."""
    return math.ceil(planned / updates) if every == "epoch" else max(planned // every, 1)


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


def _draw(dataset, batch_size: int, seed: int, group_by_length: bool = False) -> list[int]:
    """A batch's indices as training draws one: at random, or (length-bucketed text) neighbours in length."""
    rng = random.Random(seed)
    if not group_by_length:
        return [rng.randrange(len(dataset)) for _ in range(batch_size)]
    # LengthBucketSampler sorts windows of 50 batches by length: a batch is a run of neighbours there.
    window = [rng.randrange(len(dataset)) for _ in range(min(len(dataset), 50 * batch_size))]
    window.sort(key=lambda i: item_length(dataset[i]) or 0)
    start = rng.randrange(max(1, len(window) - batch_size + 1))
    return window[start:start + batch_size]


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _step_times(model, drawn: list, dataset, collate, device, cfg, autocast) -> tuple[list[float], object]:
    """Each step's seconds, from the data loader's fetching of its examples to the update and the rate
    schedule's step, and the optimizer (its state is what a checkpoint writes)."""
    optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum, (0.9, cfg.beta2))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loader = iter(torch.utils.data.DataLoader(dataset, batch_sampler=drawn, collate_fn=collate))
    times = []
    model.train()
    for _ in drawn:
        start = time.perf_counter()
        batch = _to(next(loader), device)
        loss = _loss(model, batch, autocast)
        loss.backward()
        loss.item()  # both engines read the loss every step for their logs
        # both engines log the gradient norm (clipping computes it)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm or float("inf"))
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times, optimizer


def _evaluation(model, eval_ds, collate, cfg, autocast, device) -> tuple[int, float]:
    """The peak of a no-grad forward of the largest evaluation batch, above the weights, and the seconds
    of a pass over the evaluation split (timed on its first batch, as an evaluation draws them in order)."""
    if eval_ds is None or not len(eval_ds):
        return 0, 0.0
    n = len(eval_ds)
    size = min(n, cfg.eval_batch_size or max(cfg.batch_size, 64))
    model.eval()
    with torch.no_grad():
        largest = _to(_largest_batch(eval_ds, collate, size), device)
        with PeakMemory(model) as peak:
            _loss(model, largest, autocast)
        del largest
        batch = _to(collate([eval_ds[i] for i in range(size)]), device)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            _loss(model, batch, autocast)
            times.append(time.perf_counter() - start)
    return max(0, (peak.bytes or 0) - weight_bytes(model)), min(times) / size * n


def _log_seconds(logs: int) -> float:
    """One rewrite of history.json (both engines rewrite it whole at each entry), at its mean length."""
    import tempfile

    from danlu.run import atomic_write_json

    entry = {"loss": 1.0, "grad_norm": 1.0, "learning_rate": 1e-3, "epoch": 0.5, "step": 1}
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        atomic_write_json(f"{folder}/history.json", [entry] * max(logs // 2, 1))
        return time.perf_counter() - start


def _checkpoint(model, optimizer) -> tuple[int, float]:
    """Write the weights (safetensors) and the optimizer state, as both engines' checkpoints do: the
    peak above the weights and the seconds."""
    import tempfile

    from safetensors.torch import save_model

    with tempfile.TemporaryDirectory() as folder, PeakMemory(model) as peak:
        start = time.perf_counter()
        save_model(model, f"{folder}/model.safetensors")
        torch.save(optimizer.state_dict(), f"{folder}/optimizer.pt")
        seconds = time.perf_counter() - start
    return max(0, (peak.bytes or 0) - weight_bytes(model)), seconds


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
        ("a training step", mb(est.step_memory)),
        ("an evaluation pass", f"{mb(est.evaluation_memory)} (its forward {mb(est.evaluation)})"
         if est.evaluations else "none (no evaluation split)"),
        ("a checkpoint", f"{mb(est.checkpoint_memory)} (serialising {mb(est.checkpoint)})"),
        ("memory per device (the run's peak)", mb(est.memory) + (
            "" if est.device == "cuda" else " (a step, plus an evaluation's and a checkpoint's buffers)")),
        ("time per step (this machine)", f"{est.step_seconds * 1000:,.1f} ms"),
        ("time per epoch (this machine)", f"{duration(est.epoch_seconds)} ({est.steps_per_epoch:,} steps, "
                                          f"{est.evaluations / est.epochs:.2g} evaluations and "
                                          f"{est.checkpoints / est.epochs:.2g} checkpoints)"),
        ("whole run (this machine)", f"{duration(est.run_seconds)} ({est.planned_steps:,} steps at most, "
                                     f"start-up {duration(est.startup_seconds)})"),
    ]
    if device is not None:
        found.insert(12, ("fits " + device.name, f"{'yes' if est.memory <= device.memory else 'NO'} "
                         f"({100 * est.memory / device.memory:.1f}% of {device.memory / GIB:,.0f} GiB)"))
    if cost_per_hour is not None:
        found.append(("cost", f"{est.run_seconds / 3600 * cost_per_hour:,.2f} at {cost_per_hour:g} per hour"))
    return found
