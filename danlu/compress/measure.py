"""Measuring variants: quality on a split, latency, throughput and peak memory.

Quality and memory: each variant alone, loaded and run over the whole split at batch N (the
logits give the metrics). Memory is the process's resident-set high-water mark meanwhile. On
Linux the mark is reset before each variant (`echo 5 > /proc/self/clear_refs`), so it is that
variant's own peak; it includes what the process already held (interpreter, libraries, the
data), recorded as `rss_before_bytes`. Where the reset is not possible, the process-lifetime peak
(getrusage ru_maxrss) is recorded and `memory_method` says so.

Latency: all variants loaded together and called in turn on the same examples (A, B, C,
then B, C, A...), each collated by the variant's own task (a distilled student has its own
tokenizer; all others share the run's batches), so a change in the machine's load, which on a
shared machine comes and goes within minutes, falls on every variant alike and their ratios hold.
Batches are collated before the clock starts; each call is timed with perf_counter after warm-up.
Batch N: the whole split in order; batch 1: a seeded sample of single examples. When a split has
few batches, calls repeat until MIN_CALLS were timed, so percentiles mean something. A variant
served alone keeps more of its weights in the CPU caches, so small models may run a little faster
alone than measured here.
"""

from __future__ import annotations

import ctypes
import gc
import resource
import sys
import time
from pathlib import Path

import numpy as np

MIN_CALLS = 20
WARMUP_CALLS = 3


def _count(batch: dict) -> int:
    return len(next(iter(batch.values())))


def interleaved(predicts: dict, batches: list[dict] | dict[str, list[dict]]) -> dict[str, tuple[list[float], int]]:
    """Per-call seconds and examples timed for each of `predicts` (name -> callable), calls in turn.

    `batches`: one list for all, or name -> that variant's own collation of the same examples in the
    same batches (equally long lists).
    """
    names = list(predicts)
    own = batches if isinstance(batches, dict) else dict.fromkeys(names, batches)
    count = len(own[names[0]])
    if any(len(own[n]) != count for n in names):
        raise ValueError("interleaved: every variant needs the same number of batches")
    for name in names:
        for batch in own[name][:WARMUP_CALLS]:
            predicts[name](batch)
    times = {n: [] for n in names}
    examples = dict.fromkeys(names, 0)
    i = 0
    while i < count or i < MIN_CALLS:
        shift = i % len(names)  # who goes first rotates: no variant always follows the same one
        for name in names[shift:] + names[:shift]:
            batch = own[name][i % count]
            start = time.perf_counter()
            predicts[name](batch)
            times[name].append(time.perf_counter() - start)
            examples[name] += _count(batch)
        i += 1
    return {n: (times[n], examples[n]) for n in names}


def latency(times: list[float], examples: int) -> dict:
    ms = np.asarray(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p95_ms": round(float(np.percentile(ms, 95)), 4),
            "mean_ms": round(float(ms.mean()), 4), "throughput_per_s": round(examples / float(np.sum(times)), 2),
            "calls": len(times)}


# -- memory ---------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _trim() -> None:
    # Hand freed memory back to the OS, so one variant's leftovers do not count in the next one's figure.
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


class PeakMemory:
    """with PeakMemory() as mem: ... -> mem.figures(): peak, before and added RSS bytes, memory_method."""

    def __enter__(self):
        _trim()
        self.before = (_status_kb("VmRSS") or 0) * 1024
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM after resetting /proc/self/clear_refs (this variant's own peak)"
        except OSError:
            self.method = "getrusage ru_maxrss (peak of the whole process so far)"
        return self

    def __exit__(self, *exc):
        hwm = _status_kb("VmHWM") if self.method.startswith("VmHWM") else None
        if hwm is None:
            scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kB on Linux
            hwm_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        else:
            hwm_bytes = hwm * 1024
        self.peak = hwm_bytes
        return False

    def figures(self) -> dict:
        # added: what loading and running the variant took on top of what the process already held.
        return {"peak_rss_bytes": int(self.peak), "rss_before_bytes": int(self.before),
                "added_rss_bytes": max(0, int(self.peak - self.before)), "memory_method": self.method}


def quality_and_memory(load, task, batches: list[dict], labels, main_metric: str) -> tuple[dict, np.ndarray]:
    """Load (a no-argument callable returning a Variant) and score it alone; (figures, logits)."""
    from danlu.evaluate.metrics import scalar_metrics

    with PeakMemory() as mem:
        start = time.perf_counter()
        variant = load()
        load_s = time.perf_counter() - start
        logits = task.join_outputs([variant.forward(b) for b in batches])
    del variant
    scalars = scalar_metrics(task.metrics(logits, labels))
    return {"main_metric": main_metric, "main_value": scalars.get(main_metric), "metrics": scalars,
            "load_seconds": round(load_s, 3), **mem.figures()}, logits
