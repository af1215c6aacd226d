"""What both training paths share: the result, the precision/compile choices, the optimizers by name
and the search for a resumable checkpoint.

Light on purpose: the Trainer path (engine) and the plain loop (loop) both import it, and the
loop must not pull in transformers.Trainer (and with it accelerate and peft, ~10 s of imports).
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger("danlu")

STATE_FILE = "trainer_state.json"  # written last into a checkpoint: its presence marks it complete

# transformers' get_decay_parameter_names: no weight decay on biases and norm weights.
_NO_DECAY_PATTERNS = [re.compile(p) for p in
                      (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")]


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict]
    seconds: float
    steps: int
    epochs: float
    precision: str
    compiled: bool
    resumed_from: str | None = None
    extra: dict = field(default_factory=dict)


class EvalWatcher:
    """Told of each evaluation during training, by either engine; answering True stops the training
    there (what is done so far is kept, as early stopping does). `danlu tune`'s pruner is one."""

    def on_evaluation(self, step: int, metrics: dict) -> bool:
        return False

    def on_log(self, step: int, entry: dict) -> None:
        """Each entry of the history as it is written (losses, rates, evaluations, the summary)."""


def watchers_stop(watchers, step: int, metrics: dict) -> bool:
    """Every watcher hears of the evaluation (none is skipped because an earlier one said stop)."""
    answers = [bool(w.on_evaluation(step, metrics)) for w in watchers]
    return any(answers)


def watchers_log(watchers, step: int, entry: dict) -> None:
    for watcher in watchers:
        watcher.on_log(step, entry)


def hardware_has_bf16() -> bool:
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    # Native bf16 dot products on the CPU; without them autocast emulates and runs slower.
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_precision(setting: str, large_model: bool) -> str:
    if setting != "auto":
        return setting
    # Small classic nets gain nothing from bf16 on a CPU and lose a little accuracy.
    return "bf16" if large_model and hardware_has_bf16() else "fp32"


def choose_compile(setting, large_model: bool, planned_steps: int) -> bool:
    if setting != "auto":
        return bool(setting)
    # Compiling costs a minute up front. On a 2-core CPU, MiniLM on SST-2 ran no faster compiled
    # (variable sequence lengths keep the compiled graphs dynamic; benchmarks/RESULTS.md), so auto
    # compiles only on a GPU, for a transformer and a run long enough to repay it.
    return torch.cuda.is_available() and large_model and planned_steps >= 1000


def seed_everything(seed: int) -> None:
    """What transformers.set_seed does, without importing its trainer utilities."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


def decay_parameter_names(model: nn.Module) -> list[str]:
    """The parameters weight decay applies to, by Trainer.get_decay_parameter_names' rule: none
    inside a LayerNorm, none whose name says bias or norm."""
    return _decayed(model, "")


def _decayed(module: nn.Module, prefix: str) -> list[str]:
    names = []
    for child_name, child in module.named_children():
        if isinstance(child, nn.LayerNorm):
            continue
        names += _decayed(child, f"{prefix}{child_name}.")
    names += [prefix + n for n in module._parameters if module._parameters[n] is not None]
    return [n for n in names if not any(p.search(n.lower()) for p in _NO_DECAY_PATTERNS)]


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                   betas: tuple[float, float] = (0.9, 0.999), decay: list[str] | None = None) -> torch.optim.Optimizer:
    """One of the recipe's five optimizers, with weight decay only on the `decay` parameters."""
    decay = set(decay_parameter_names(model) if decay is None else decay)
    # Frozen parameters stay in the optimizer (they get no gradient, so no update): gradual
    # unfreezing can then switch them on without a new optimizer.
    params = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in params if n in decay], "weight_decay": weight_decay},
        {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
    ]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=False)
    if name == "adagrad":
        return torch.optim.Adagrad(groups, lr=lr)
    if name == "adam":  # classic Adam: weight decay is an L2 term in the gradient
        return torch.optim.Adam(groups, lr=lr, betas=betas)
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def latest_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint-N whose state file was fully written; half-written ones are removed.

    Both paths write the state file after the weights and optimizer, and delete old checkpoints
    only after that, so a parsable state file marks a checkpoint that can be resumed.
    """
    for ckpt in reversed(checkpoint_dirs(folder)):
        try:
            json.loads((ckpt / STATE_FILE).read_text())
            return str(ckpt)
        except (OSError, ValueError):
            log.warning("removing incomplete checkpoint %s", ckpt)
            shutil.rmtree(ckpt, ignore_errors=True)
    return None


def checkpoint_dirs(folder: Path) -> list[Path]:
    """checkpoint-N folders, oldest step first (not the .tmp folders of one being written)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))
