"""Choosing what to train: frozen embeddings or layers, gradual unfreezing, LoRA adapters.

The layer structure is found on the transformers model itself (BERT/ViT `encoder.layer`, GPT-2 `h`),
so one function serves every family; the classic nets have no layers to freeze but their body.
"""

from __future__ import annotations

import logging

from torch import nn
from transformers import TrainerCallback

from danlu.errors import DanluError

log = logging.getLogger("danlu")

HEAD_NAMES = ("classifier", "score", "lm_head", "head", "pooler")


def backbone(model: nn.Module) -> nn.Module:
    base = getattr(model, "base_model", None)
    return base if base is not None and base is not model else getattr(model, "body", model)


def embeddings(model: nn.Module) -> list[nn.Module]:
    base = backbone(model)
    found = [m for name in ("embeddings", "wte", "wpe") if (m := getattr(base, name, None)) is not None]
    return found


def layers(model: nn.Module) -> list[nn.Module]:
    """The stack of transformer blocks, bottom first."""
    base = backbone(model)
    encoder = getattr(base, "encoder", None)
    if encoder is not None and hasattr(encoder, "layer"):
        return list(encoder.layer)
    if hasattr(base, "h"):
        return list(base.h)
    return []


def _set(modules, trainable: bool) -> None:
    for module in modules:
        for p in module.parameters():
            p.requires_grad = trainable


def _stay_in_eval(module: nn.Module, _inputs) -> None:
    if module.training:
        module.eval()


def keep_in_eval(module: nn.Module) -> None:
    """A frozen backbone runs in eval mode even while its head trains: the engines call model.train()
    before every step, which would let BatchNorm's running statistics drift on the new data and dropout
    perturb features the head is meant to read as they are. A forward pre-hook (not a replaced train()),
    so that a copy of the model keeps the behaviour."""
    module.register_forward_pre_hook(_stay_in_eval)


def _train_head_only(model: nn.Module) -> None:
    _set([backbone(model)], False)
    heads = [m for name, m in model.named_children() if name in HEAD_NAMES]
    # BERT's pooler feeds the classifier and is often absent from sentence-embedding checkpoints
    # (then freshly initialised): it belongs with the head.
    pooler = getattr(backbone(model), "pooler", None)
    _set(heads + ([pooler] if pooler is not None else []), True)


def freeze(model: nn.Module, what: str | int | None) -> None:
    """`embeddings`, the first N layers (an int), or `backbone` (everything but the head)."""
    if what in (None, "none", 0):
        return
    if what == "backbone":
        _train_head_only(model)
        keep_in_eval(backbone(model))
        return
    if what == "embeddings":
        found = embeddings(model)
        if not found:
            raise DanluError(f"transfer.freeze: {type(model).__name__} has no embeddings to freeze")
        _set(found, False)
        return
    stack = layers(model)
    if not stack:
        raise DanluError(f"transfer.freeze: {type(model).__name__} has no transformer layers to freeze")
    if int(what) > len(stack):
        raise DanluError(f"transfer.freeze: the model has {len(stack)} layers, cannot freeze {what}")
    _set(embeddings(model) + stack[: int(what)], False)


class GradualUnfreeze(TrainerCallback):
    """ULMFiT-style: start with only the head trainable, unfreeze one more layer from the top each epoch.

    The optimizer holds every parameter from the start (danlu's create_optimizer keeps frozen ones;
    they simply have no gradient), so unfreezing needs no new optimizer.
    """

    def __init__(self, model: nn.Module):
        self.groups = list(reversed(layers(model))) + [embeddings(model)]
        _train_head_only(model)  # not kept in eval mode: its layers train again, dropout and all
        self.next = 0

    def on_epoch_begin(self, args, state, control, **kwargs):
        if state.epoch and self.next < len(self.groups):  # epoch 0 trains the head alone
            group = self.groups[self.next]
            _set(group if isinstance(group, list) else [group], True)
            self.next += 1


def apply_lora(model: nn.Module, r: int, alpha: int, dropout: float, target: list[str] | None,
               task_type: str = "SEQ_CLS") -> nn.Module:
    """Wrap the model in peft LoRA adapters; the head stays fully trainable."""
    from peft import LoraConfig, get_peft_model

    head = [name for name, _ in model.named_children() if name in HEAD_NAMES and name != "pooler"]
    if getattr(backbone(model), "pooler", None) is not None:
        head.append("pooler")  # trained with the head, as in freeze(model, "backbone")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target,
                        task_type=task_type, modules_to_save=head or None)
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise DanluError(f"transfer.lora: {exc}") from None


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the weights so the saved model loads without peft."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def apply_transfer(model: nn.Module, cfg) -> tuple[nn.Module, list[TrainerCallback]]:
    """The recipe's `transfer:` section applied to a freshly built model."""
    if cfg is None:
        return model, []
    if cfg.lora is not None:
        if cfg.freeze not in (None, "none", 0) or cfg.gradual_unfreeze:
            raise DanluError("transfer: LoRA already freezes the pretrained weights; drop freeze/gradual_unfreeze")
        lora = cfg.lora
        return apply_lora(model, lora.r, lora.alpha, lora.dropout, lora.target), []
    if cfg.gradual_unfreeze:
        return model, [GradualUnfreeze(model)]
    freeze(model, cfg.freeze)
    return model, []
