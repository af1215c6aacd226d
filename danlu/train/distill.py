"""Knowledge distillation: a student learns from a teacher run's soft labels and the true labels.

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, y)
(Hinton et al. 2015; T^2 keeps the soft term's gradients on the scale of the hard term's).

The teacher may use another tokenizer or preprocessing than the student, so its logits are computed
once, with the teacher's own task (danlu.pipeline.distill), and travel with each student example.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def attach(dataset, logits: np.ndarray):
    """Put each example's teacher logits on it (datasets of dicts or danlu's lazy examples)."""
    if hasattr(dataset, "items"):
        for item, row in zip(dataset.items, logits):
            item["teacher_logits"] = row
        return dataset
    return _WithTeacher(dataset, logits)


class _WithTeacher(torch.utils.data.Dataset):
    def __init__(self, dataset, logits):
        self.dataset, self.logits = dataset, logits

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return {**self.dataset[i], "teacher_logits": self.logits[i]}


def collate_with_teacher(collate):
    def run(batch: list[dict]) -> dict:
        teacher = [b.pop("teacher_logits") for b in batch] if "teacher_logits" in batch[0] else None
        out = collate(batch)
        if teacher is not None:
            out["teacher_logits"] = torch.as_tensor(np.stack(teacher))
        return out

    return run


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float,
                 alpha: float) -> torch.Tensor:
    t = temperature
    soft = nn.functional.kl_div(nn.functional.log_softmax(student.float() / t, -1),
                                nn.functional.softmax(teacher.float() / t, -1), reduction="batchmean") * t * t
    hard = nn.functional.cross_entropy(student.float(), labels)
    return alpha * soft + (1 - alpha) * hard
