"""Causal language modelling on a corpus before the task's own text (continued pretraining)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from transformers import AutoTokenizer

from danlu.inference import TorchForward
from danlu.run import Run, save_atomically
from danlu.train.corpus import load_corpus
from danlu.train.pretrain import pretrain_settings


def pretrain_clm_stage(task, train: pd.DataFrame, out: Path, say, callbacks=()) -> dict:
    from danlu.train.engine import fit

    recipe = task.recipe
    cfg = recipe.pretrain
    texts = load_corpus(cfg, train, recipe.base_dir, whole_files=True)
    say(f"pretrain: clm on {len(texts):,} texts")
    # The vocabulary also covers the task's own text (see text_classification.pretrain).
    own = train["text"].astype(str).tolist() if cfg.corpus and "text" in train else []
    saved = out / "tokenizer"
    if not recipe.model.from_ and (saved / "tokenizer_config.json").exists():
        task.tokenizer = AutoTokenizer.from_pretrained(saved)
        task.tokenizer.model_max_length = task.block
    else:
        task.setup(pd.DataFrame({"text": texts + own}))
        if not recipe.model.from_:
            save_atomically(saved, task.tokenizer.save_pretrained)
    train_texts, held_texts = _hold_out(texts)
    torch.manual_seed(recipe.train.seed)
    model = task.build_model()
    held = task.encode(pd.DataFrame({"text": held_texts}))
    result = fit(model, task.encode(pd.DataFrame({"text": train_texts}), train=True), held, task.collate,
                 pretrain_settings(recipe), Run(out).checkpoints, Run(out).history_path, None, None, False,
                 large_model=True, callbacks=list(callbacks))
    scores = task.evaluate(TorchForward(result.model), held)
    save_atomically(Run(out).model_dir, lambda tmp: task.save(result.model, tmp))
    return {"objective": "clm", "eval_loss": scores["loss"], "perplexity": scores["perplexity"],
            "steps": result.steps, "seconds": round(result.seconds, 1), "history": result.history}


def _hold_out(texts: list[str], share: float = 0.05) -> tuple[list[str], list[str]]:
    """5% of the corpus measures perplexity: every 20th document, or the end of a single one."""
    if len(texts) >= 20:
        every = int(round(1 / share))
        return ([t for i, t in enumerate(texts) if i % every != every - 1],
                [t for i, t in enumerate(texts) if i % every == every - 1])
    joined = "\n".join(texts)
    cut = int(len(joined) * (1 - share))
    return [joined[:cut]], [joined[cut:]]
