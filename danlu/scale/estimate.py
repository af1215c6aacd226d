"""`danlu estimate RECIPE`: parameters, memory per device, whether it fits, time and cost, before training.

The recipe's model is built as `danlu train` builds it (task setup on the training split, the
transfer section's LoRA or frozen layers), then measured by danlu.train.estimate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from danlu.errors import DanluError
from danlu.train.estimate import GIB, Estimate, estimate_training

# Memory of common accelerators, GiB (the vendors' figures for the usual variant).
ACCELERATORS = {
    "T4": 16, "L4": 24, "A10G": 24, "RTX-3090": 24, "RTX-4090": 24, "V100": 32, "A100-40GB": 40,
    "A100-80GB": 80, "L40S": 48, "H100": 80, "H200": 141, "MI300X": 192, "TPU-v5e": 16,
}


@dataclass
class Device:
    name: str
    memory: int  # bytes


def device_named(name: str | None) -> Device:
    """cpu (this machine's memory), cuda (the first GPU here) or an accelerator of the table."""
    import torch

    name = name or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return Device(f"cpu ({os.cpu_count()} cores)", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DanluError("--device cuda: this machine has no GPU; name an accelerator instead: "
                             + ", ".join(ACCELERATORS))
        props = torch.cuda.get_device_properties(0)
        return Device(props.name, props.total_memory)
    for known, gib in ACCELERATORS.items():
        if known.lower() == name.lower():
            return Device(known, gib * GIB)
    raise DanluError(f"--device {name}: not an accelerator danlu knows; use cpu, cuda or one of: "
                     + ", ".join(ACCELERATORS))


def estimate_recipe(recipe, say=None) -> Estimate:
    """Build the recipe's model and data as training would, and estimate its training."""
    from danlu.pipeline import check_data
    from danlu.pipeline.plan import plan_training
    from danlu.tasks import make_task
    from danlu.train import silence_transformers
    from danlu.train.fitting import seed_everything

    silence_transformers()
    say = say or (lambda msg: None)
    say("check data")
    splits, _, _ = check_data(recipe)
    frames = splits.frames
    task = make_task(recipe)
    task.setup(frames["train"], splits.features, splits.categorical)
    seed_everything(recipe.train.seed)
    model = task.build_model()
    train_ds = task.encode(frames["train"], train=True)
    validation = frames.get("validation")
    eval_ds = task.encode(validation) if validation is not None and len(validation) else None
    plan = plan_training(recipe, task, model, frames["train"], train_ds)
    say(f"probe: {type(model).__name__}, a few steps at batch {recipe.train.batch_size}")
    return estimate_training(plan.model, plan.train_ds, plan.collate, recipe.train, task.large_model, eval_ds,
                             group_by_length=task.group_by_length)
