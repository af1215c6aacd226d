"""Knowledge distillation: a student learns from a teacher run's soft labels and the true labels.

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, y)
(Hinton et al. 2015; T^2 keeps the soft term's gradients on the scale of the hard term's).

The teacher may use another tokenizer or preprocessing than the student, so its logits are computed
once, with the teacher's own task, over the training frame, and travel with each student example.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from danlu.errors import DanluError
from danlu.run import Run


def teacher_logits(teacher_run: str, frame: pd.DataFrame, student_labels: list) -> np.ndarray:
    from danlu.tasks import load_task, predict_logits

    task, model = load_task(Run(teacher_run).require_model())
    if [str(v) for v in task.labels] != [str(v) for v in student_labels]:
        raise DanluError(f"distill.teacher: the teacher's classes {task.labels} differ from the student's "
                         f"{student_labels}")
    from danlu.train.engine import choose_precision

    # Soft labels need no fp32 precision: bf16 where the hardware has it halves the teacher's pass.
    fast = choose_precision("auto", large_model=True) == "bf16"
    logits, _ = predict_logits(model, task.encode(frame.drop(columns=["label"], errors="ignore")), task.collate,
                               batch_size=128, bf16=fast)
    return logits.astype(np.float32)


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


def prepare(cfg, task, train_frame: pd.DataFrame, train_ds, base_dir=None):
    """The recipe's `distill:` section: (train_ds with teacher logits, collate, (temperature, alpha))."""
    if cfg is None:
        return train_ds, task.collate, None
    if task.kind != "classification":
        raise DanluError("distill: distillation needs a classification task")
    teacher = str(_teacher_dir(cfg.teacher, base_dir))
    logits = teacher_logits(teacher, train_frame, task.labels)
    if cfg.augment:
        if not hasattr(train_ds, "items") or "text" not in train_frame:
            raise DanluError("distill.augment: augmentation perturbs words, so it needs a text task")
        extra = pd.DataFrame({"text": augment_texts(train_frame["text"].astype(str).tolist(), cfg.augment)})
        extra_logits = teacher_logits(teacher, extra, task.labels)
        # The teacher's answer is the hard label too: a cut or perturbed sentence has no true one.
        extra["label"] = [task.labels[i] for i in extra_logits.argmax(1)]
        train_ds = type(train_ds)(train_ds.items + task.encode(extra).items)
        logits = np.concatenate([logits, extra_logits])
    return attach(train_ds, logits), collate_with_teacher(task.collate), (cfg.temperature, cfg.alpha)


def augment_texts(texts: list[str], copies: int, seed: int = 0, p_mask: float = 0.1, p_swap: float = 0.1,
                  p_ngram: float = 0.25, max_n: int = 5) -> list[str]:
    """Tang et al. 2019's transfer set: each word masked with p_mask or swapped for a random word of
    the corpus with p_swap, then with p_ngram the sentence is cut to a random n-gram (n <= max_n)."""
    rng = np.random.default_rng(seed)
    vocab = sorted({w for t in texts for w in t.split()})
    if not vocab:
        raise DanluError("distill.augment: the training texts have no words to perturb")
    out = []
    for _ in range(copies):
        for text in texts:
            words = text.split() or [text]
            new = []
            for w in words:
                r = rng.random()
                new.append("[MASK]" if r < p_mask else vocab[rng.integers(len(vocab))] if r < p_mask + p_swap else w)
            if len(new) > 1 and rng.random() < p_ngram:
                n = int(rng.integers(1, min(max_n, len(new)) + 1))
                start = int(rng.integers(0, len(new) - n + 1))
                new = new[start:start + n]
            out.append(" ".join(new))
    return out


def _teacher_dir(name: str, base_dir: Path | None) -> Path:
    roots = ([Path(base_dir)] if base_dir else []) + [Path.cwd()]
    tried = [Path(name) if Path(name).is_absolute() else root / name for root in roots]
    for candidate in tried:
        if (candidate / "model" / "config.json").exists():
            return candidate
    raise DanluError(f"distill.teacher: no finished run at {' or '.join(map(str, tried))}")
