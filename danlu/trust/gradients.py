"""The continuous input gradients are taken through, shared by the attacks (robustness.py) and the
explanations (explain.py): a task names it with its capability `gradient_input`."""

from __future__ import annotations

import numpy as np


def split_batch(model, batch: dict, key: str):
    """(x: the input to differentiate, extras: the batch's other tensors by name). For "inputs_embeds" x is
    the token ids' embeddings, looked up in the model's input embeddings (ids have no gradient)."""
    import torch

    extras = {k: (torch.as_tensor(v) if isinstance(v, np.ndarray) else v) for k, v in batch.items() if k != "labels"}
    if key == "inputs_embeds":
        ids = extras.pop("input_ids")
        return model.get_input_embeddings()(ids).detach(), extras
    return torch.as_tensor(extras.pop(key)).float(), extras


def logits_of(model, key: str, extras: dict, x):
    return model(**extras, **{key: x})["logits"].float()


def reference(model, key: str, x):
    """The input that says nothing: the training mean where the model normalises its own input (the classic
    nets: a mean-grey image, the mean row), else zeros (an all-zero embedding)."""
    import torch

    mean = getattr(model, "mean", None)
    if key != "inputs_embeds" and isinstance(mean, torch.Tensor) and mean.numel() > 1:
        return torch.zeros_like(x) + mean.to(x.dtype)
    return torch.zeros_like(x)


def input_unit(model, key: str) -> float:
    """What 1 is in the attacked input's units: 1 for pixels and features; for embeddings the embedding
    matrix's root-mean-square entry."""
    if key != "inputs_embeds":
        return 1.0
    weight = model.get_input_embeddings().weight.detach()
    return float(weight.pow(2).mean().sqrt())
