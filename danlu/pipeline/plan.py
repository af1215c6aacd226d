"""What the recipe's `joint:`, `transfer:` and `distill:` sections do to a freshly built model.

`plan_training` wraps or freezes the model and prepares its data; `TrainingPlan.finish` turns what
was trained back into the plain task model that is saved (the classifier out of the joint model,
the LoRA adapters merged into their weights), so a saved model never needs danlu or peft to load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from danlu.errors import DanluError


@dataclass
class TrainingPlan:
    model: Any
    train_ds: Any
    collate: Callable
    callbacks: list = field(default_factory=list)
    distill: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)  # one line each for the report
    joint: bool = False
    lora: bool = False

    def finish(self, trained):
        model = trained.classifier if self.joint else trained
        if not self.lora:
            return model
        from danlu.train.transfer import merge_lora  # peft and the Trainer stack: only when LoRA was used

        return merge_lora(model)


def plan_training(recipe, task, model, train_frame, train_ds) -> TrainingPlan:
    plan = TrainingPlan(model=model, train_ds=train_ds, collate=task.collate)
    if recipe.transfer is not None:
        from danlu.train.transfer import apply_transfer

        plan.model, plan.callbacks = apply_transfer(model, recipe.transfer)
        plan.lora = recipe.transfer.lora is not None
        t = recipe.transfer
        what = (f"LoRA r={t.lora.r}, alpha={t.lora.alpha}" if plan.lora else
                "gradual unfreezing (head first, one layer more each epoch)" if t.gradual_unfreeze else
                f"frozen: {t.freeze if isinstance(t.freeze, str) else f'first {t.freeze} layers'}")
        plan.notes.append(f"transfer: {what}")
    if recipe.joint is not None:
        from danlu.train.pretrain import JointModel

        if not hasattr(plan.model, "bert"):
            raise DanluError(f"joint: the joint MLM objective needs a BERT-family encoder, "
                             f"not {type(plan.model).__name__}")
        if plan.lora:
            raise DanluError("joint: cannot be combined with transfer.lora")
        j = recipe.joint
        plan.model = JointModel(plan.model, task.tokenizer, j.w_pre, j.w_fin, j.mask_prob)
        plan.joint = True
        plan.notes.append(f"joint objective: {j.w_pre:g} x MLM + {j.w_fin:g} x task loss on the same batches")
    if recipe.distill is not None:
        from danlu.pipeline import distill as distillation

        d = recipe.distill
        plan.train_ds, plan.collate, plan.distill = distillation.prepare(d, task, train_frame, train_ds,
                                                                         recipe.base_dir)
        extra = f", {d.augment} teacher-labelled perturbed copies of each text" if d.augment else ""
        plan.notes.append(f"distilled from {d.teacher} (temperature {d.temperature:g}, alpha {d.alpha:g}{extra})")
    return plan
