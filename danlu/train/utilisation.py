"""How close a training run came to the machine's limit: achieved FLOP/s over the measured matmul peak (MFU).

The peak is measured, not looked up: a dense matmul in the run's precision (fp32, or bf16 where the run
trained under bf16 autocast), at the run's thread count, best of a few repeats; cached per CPU model (or GPU
name), precision and thread count in ~/.cache/danlu/matmul_peak.json ($DANLU_CACHE), so a machine pays
for the probe once. The run's FLOPs come from torch's FlopCounterMode over one forward and backward of a
real training batch (matmuls, convolutions and attention counted, as for MFU in the literature), times the
optimizer steps taken, over the training's seconds.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from danlu.run import atomic_write_json

PROBE_SIDE = 1024  # a 1024^3 matmul: 2.1 GFLOP, long enough to reach the peak, short enough to probe quickly
PROBE_SECONDS = 0.25  # per repeat
REPEATS = 3


def cache_path() -> Path:
    root = Path(os.environ.get("DANLU_CACHE", Path.home() / ".cache" / "danlu"))
    return root / "matmul_peak.json"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def matmul_peak(precision: str, device: torch.device | None = None) -> dict:
    """{"flops_per_s", "device", "precision", "threads", "measured_at"}: the best dense-matmul rate seen."""
    device = device or torch.device("cpu")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    threads = torch.get_num_threads()
    key = f"{device_name(device)}|{device.type}|{precision}|{threads}"
    path = cache_path()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached:
        return cached[key]
    a = torch.randn(PROBE_SIDE, PROBE_SIDE, device=device, dtype=dtype)
    b = torch.randn(PROBE_SIDE, PROBE_SIDE, device=device, dtype=dtype)
    flops = 2 * PROBE_SIDE ** 3
    best = 0.0
    with torch.inference_mode():
        torch.matmul(a, b)  # warm-up: thread pool and kernel selection
        for _ in range(REPEATS):
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < PROBE_SECONDS:
                torch.matmul(a, b)
                count += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = max(best, count * flops / (time.perf_counter() - start))
    found = {"flops_per_s": best, "device": device_name(device), "precision": precision, "threads": threads,
             "measured_at": time.strftime("%Y-%m-%d %H:%M"), "load_average": _load()}
    cached[key] = found
    try:
        atomic_write_json(path, cached)
    except OSError:  # a read-only home: the figure is still right for this run
        pass
    return found


def step_flops(model, batch: dict) -> int:
    """FLOPs of one forward and backward of `model` on `batch` (the gradients are cleared afterwards); of
    one own training step, on a copy, for a model that steps itself (danlu.train.loop: a GAN's two updates)."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    from danlu.train.loop import steps_itself

    if steps_itself(model):
        twin = copy.deepcopy(model)  # its step updates the weights: the trained model is left as it is
        with FlopCounterMode(display=False) as counter:
            twin.training_step(batch, twin.configure_optimizers())
        return int(counter.get_total_flops())
    was = model.training
    model.train()
    try:
        with FlopCounterMode(display=False) as counter:
            out = model(**batch)
            loss = out["loss"] if isinstance(out, dict) or hasattr(out, "keys") else out.loss
            loss.backward()
        return int(counter.get_total_flops())
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was)


def utilisation(model, task, dataset, batch_size: int, examples_per_step: int, steps: int, seconds: float,
                precision: str) -> dict:
    """{"train_flops_per_s", "train_mfu", "peak_flops_per_s", ...} of a finished training."""
    if steps <= 0 or seconds <= 0 or not len(dataset):
        return {}
    items = [dataset[i] for i in range(min(batch_size, len(dataset)))]
    batch = task.collate(items)
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
    flops = step_flops(model, batch) * examples_per_step / len(items)
    achieved = flops * steps / seconds
    peak = matmul_peak("bf16" if precision == "bf16" else "fp32", device)
    return {"train_flops_per_s": round(achieved), "train_mfu": float(f"{achieved / peak['flops_per_s']:.3g}"),
            "peak_flops_per_s": round(peak["flops_per_s"]), "peak": peak,
            "flops_per_step": round(flops), "flops_counted_on": f"{len(items)} training examples"}


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
