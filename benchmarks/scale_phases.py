"""Where a training's peak memory and time go, phase by phase: what `danlu estimate` must model.

Trains a recipe in this process (`danlu train --estimate`'s pipeline) with the engines' phases wrapped:
each optimizer step's forward and backward, the optimizer update, the evaluations, the checkpoints,
the logs, the data loader's start. At every phase boundary the kernel's high-water mark of the process
(VmHWM) is read and reset (/proc/self/clear_refs), so each phase's own peak is exact, not sampled;
time is counted per phase too (exclusive of the phases inside it). Prints a table of phases: calls,
seconds, and peak resident memory above what the process held when training began (plus the weights,
as danlu.train.memory counts it), beside the estimate's parts.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale_phases.py shakespeare_char [key=value ...]

Linux only (VmHWM). The overrides of benchmarks/scale_estimate.py are used when none are given.
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from scale_estimate import CASES  # noqa: E402

from danlu.train import memory  # noqa: E402


class Meter:
    def __init__(self):
        self.stack = ["setup"]
        self.peak = defaultdict(int)  # kB above the base
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self.base = None
        self.mark = time.perf_counter()
        self.highs = []  # (phase, its call number, MB above the base): each time the run's peak rises

    def _close_segment(self):
        now = time.perf_counter()
        label = self.stack[-1]
        self.seconds[label] += now - self.mark
        self.mark = now
        if self.base is not None:
            peak = memory._status_kb("VmHWM") - self.base
            if peak > max(self.peak.values(), default=0) + 256:  # rises of a quarter MB and more
                self.highs.append((label, self.calls[label], peak))
            self.peak[label] = max(self.peak[label], peak)
            memory._CLEAR.write_text("5")

    def enter(self, label):
        self._close_segment()
        self.stack.append(label)
        self.calls[label] += 1

    def leave(self):
        self._close_segment()
        self.stack.pop()

    def start(self):
        memory._release_free_heap()
        memory._CLEAR.write_text("5")
        self.base = memory._status_kb("VmRSS")
        self.peak.clear()
        self.seconds.clear()
        self.highs.clear()
        self.calls.clear()
        self.mark = time.perf_counter()


METER = Meter()


def wrap(owner, name, label):
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapped(*args, **kwargs):
        METER.enter(label)
        try:
            return original(*args, **kwargs)
        finally:
            METER.leave()

    setattr(owner, name, wrapped)


def install():
    import torch

    from danlu.pipeline import stages
    from danlu.train import loop

    original_fit = stages.fit_task

    def fit_task(*args, **kwargs):
        METER.start()
        METER.enter("fit")
        try:
            return original_fit(*args, **kwargs)
        finally:
            METER.leave()
            METER.base = None

    stages.fit_task = fit_task
    wrap(stages, "_estimate", "estimate (probe)")
    for name, label in (("_update", "train step"), ("evaluate", "evaluation"), ("_save", "checkpoint"),
                        ("_log", "log")):
        wrap(loop._Loop, name, label)
    wrap(torch.utils.data.DataLoader, "__iter__", "data loader start")
    wrap(torch.optim.Optimizer, "zero_grad", "optimizer zero_grad")
    from danlu.train import engine

    for name, label in (("training_step", "forward+backward"), ("evaluate", "evaluation"),
                        ("_save_checkpoint", "checkpoint"), ("log", "log"),
                        ("create_optimizer", "create optimizer")):
        wrap(engine.DanluTrainer, name, label)
    # Adam's update: its first call allocates the state
    for cls in (torch.optim.Adam, torch.optim.AdamW):
        wrap(cls, "step", "optimizer step")


def main() -> None:
    name, overrides = sys.argv[1], sys.argv[2:]
    install()
    from danlu.pipeline import train
    from danlu.recipe import load_recipe

    recipe = load_recipe(REPO / "recipes" / f"{name}.yaml", (overrides or CASES[name]) + ["train.progress=false"])
    with tempfile.TemporaryDirectory() as tmp:
        run = train(recipe, Path(tmp) / "run", estimate=True)
        found = json.loads((run.root / "resources.json").read_text())
    est = found["estimate"]
    weights_kb = est["weights"] / 1024
    print(f"{name}: estimate {est['memory'] / 2**20:.1f} MB (weights {est['weights'] / 2**20:.1f}, gradients "
          f"{est['gradients'] / 2**20:.1f}, optimizer {est['optimizer'] / 2**20:.1f}, activations "
          f"{est['activations'] / 2**20:.1f}, transient {est['transient'] / 2**20:.1f}); "
          f"{est['epoch_seconds']:.2f} s/epoch estimated, {found['seconds'] / found['epochs']:.2f} measured")
    print("| phase | calls | seconds | peak above the start + weights, MB |")
    print("|---|---|---|---|")
    for label in sorted(METER.seconds, key=lambda k: -METER.seconds[k]):
        peak = METER.peak.get(label)
        shown = f"{(peak + weights_kb) / 1024:.1f}" if peak is not None and label in METER.peak else "-"
        print(f"| {label} | {METER.calls.get(label, 1)} | {METER.seconds[label]:.2f} | {shown} |")
    print("the peak rose in: " + ", ".join(f"{label} #{call} ({(kb + weights_kb) / 1024:.1f} MB)"
                                           for label, call, kb in METER.highs))
    overall = max(METER.peak.values()) + weights_kb
    print(f"overall peak {overall / 1024:.1f} MB")


if __name__ == "__main__":
    main()
