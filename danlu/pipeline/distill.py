"""The recipe's `distill:` section: the teacher run's soft labels on the training rows (and on
perturbed copies of them), put beside each student example for the engine's distillation loss.

The teacher may use another tokenizer or preprocessing than the student, so its logits are computed
once, with the teacher's own task, through the one inference path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from danlu.errors import DanluError
from danlu.run import Run
from danlu.train.distill import attach, collate_with_teacher


def teacher_logits(teacher_run: str, frame: pd.DataFrame, student_labels: list) -> np.ndarray:
    from danlu.inference import outputs, torch_forward
    from danlu.tasks import load_task

    task, model = load_task(Run(teacher_run).require_model())
    if not task.spec.has_classes:
        raise DanluError(f"distill.teacher: {teacher_run} is a {task.name} run; a teacher is a classification run")
    if [str(v) for v in task.labels] != [str(v) for v in student_labels]:
        raise DanluError(f"distill.teacher: the teacher's classes {task.labels} differ from the student's "
                         f"{student_labels}")
    # Soft labels need no fp32 precision: bf16 where the hardware has it halves the teacher's pass.
    logits, _ = outputs(task, torch_forward(model, "auto"), task.encode(frame.drop(columns=["label"], errors="ignore")),
                        batch_size=128)
    return logits.astype(np.float32)


def prepare(cfg, task, train_frame: pd.DataFrame, train_ds, base_dir=None):
    """The recipe's `distill:` section: (train_ds with teacher logits, collate, (temperature, alpha))."""
    if cfg is None:
        return train_ds, task.collate, None
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
        if (Run(candidate).model_dir / "config.json").exists():
            return candidate
    raise DanluError(f"distill.teacher: no finished run at {' or '.join(map(str, tried))}")
