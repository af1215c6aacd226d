"""Denoising pretraining of the encoder-decoder (recipe `pretrain: {objective: denoise}`).

BART's text infilling (Lewis et al. 2020) on monolingual sentences: spans of tokens, their lengths
drawn from Poisson(3), are each replaced by one `<mask>` until `pretrain.mask_prob` (default 0.3, BART's)
of a sentence's tokens are hidden, and the model writes the whole sentence back. The corpus is by
default the monolingual side of the data, both sides of the training pairs each read alone (the encoder
learns to read both languages, the decoder to write them), or `pretrain.corpus` (a line file, or a table's
`pretrain.column`). The translation then fine-tunes from RUN/pretrain/model like from any checkpoint.

Spans are drawn from torch's generator, whose state the engine checkpoints, so a resumed pretraining
corrupts the same sentences the same way.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from danlu.errors import DataError
from danlu.run import Run, save_atomically
from danlu.tasks.translation import model as nets
from danlu.train.corpus import load_corpus
from danlu.train.examples import Examples
from danlu.train.pretrain import corpus_tokenizer, pretrain_settings

SPAN_MEAN = 3.0  # BART's Poisson lambda
MASKED_SHARE = 0.3  # BART's share of hidden tokens


def pretrain_denoise(task, train: pd.DataFrame, out: Path, say, callbacks=()) -> dict:
    from danlu.train.engine import fit

    recipe = task.recipe
    cfg = recipe.pretrain
    own = [t for t in train["source"].astype(str).tolist() + train["target"].astype(str).tolist() if t.strip()]
    texts = load_corpus(cfg, train, recipe.base_dir) if cfg.corpus else own
    if not texts:
        raise DataError("pretrain: the corpus holds no text to pretrain on")
    say(f"pretrain: denoise on {len(texts):,} sentences")
    # The vocabulary covers the task's own pairs too, as text_classification.pretrain explains.
    tokenizer = corpus_tokenizer(recipe, texts + (own if cfg.corpus else []), out,
                                 lambda vocab: nets.shared_tokenizer(vocab, recipe.tokenizer))
    added = tokenizer.mask_token is None
    if added:  # a pretrained tokenizer without one (Marian's): the new id gets a new embedding row
        tokenizer.add_special_tokens({"mask_token": nets.MASK})
    tokenizer.model_max_length = task.max_length
    task.tokenizer = tokenizer
    torch.manual_seed(recipe.train.seed)
    model = task.build_model()
    if added:
        model.resize_token_embeddings(len(tokenizer))
    share = cfg.mask_prob if cfg.mask_prob is not None else MASKED_SHARE
    collate = Infilling(tokenizer, share)
    train_ds, held = hold_out(sentences(tokenizer, texts, task.max_length))
    result = fit(model, train_ds, held, collate, pretrain_settings(recipe), Run(out).checkpoints,
                 Run(out).history_path, None, None, False, large_model=True, callbacks=list(callbacks),
                 group_by_length=True)
    loss = held_out_loss(result.model, held, collate, recipe.train.seed)
    save_atomically(Run(out).model_dir, lambda tmp: (result.model.save_pretrained(tmp), tokenizer.save_pretrained(tmp)))
    return {"objective": "denoise", "sentences": len(texts), "eval_loss": loss, "perplexity": math.exp(min(loss, 700.0)),
            "steps": result.steps, "seconds": round(result.seconds, 1), "history": result.history}


def sentences(tokenizer, texts: list[str], max_length: int) -> Examples:
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return Examples([{"input_ids": one} for one in ids if len(one) > 1])


def hold_out(examples: Examples, every: int = 20) -> tuple[Examples, Examples]:
    """Every 20th sentence (5%) measures the held-out loss."""
    items = examples.items
    return (Examples([x for i, x in enumerate(items) if i % every != every - 1]),
            Examples([x for i, x in enumerate(items) if i % every == every - 1]))


def infill(ids: list[int], share: float, mask_id: int, protected: set[int]) -> list[int]:
    """`ids` with spans of Poisson(3) tokens each replaced by one mask, until `share` of the tokens that
    are not special (the end-of-sentence token stays) are hidden."""
    open_ = [i for i, token in enumerate(ids) if token not in protected]
    goal = round(share * len(open_))
    if not goal:
        return list(ids)
    masked = np.zeros(len(open_), dtype=bool)
    while masked.sum() < goal:
        length = max(1, int(torch.poisson(torch.full((1,), SPAN_MEAN)).item()))
        start = int(torch.randint(len(open_), (1,)).item())
        masked[start:start + min(length, goal - int(masked.sum()))] = True
    hidden = {open_[i] for i in np.flatnonzero(masked)}
    out, previous = [], False
    for position, token in enumerate(ids):
        if position in hidden:
            if not previous:
                out.append(mask_id)
            previous = True
        else:
            out.append(token)
            previous = False
    return out


class Infilling:
    """The collator: each sentence corrupted as the encoder's input, the sentence itself as the labels."""

    def __init__(self, tokenizer, share: float):
        self.pad, self.mask, self.share = tokenizer.pad_token_id, tokenizer.mask_token_id, share
        self.protected = set(tokenizer.all_special_ids)

    def __call__(self, items: list[dict]) -> dict:
        clean = [list(item["input_ids"]) for item in items]
        noisy = [infill(ids, self.share, self.mask, self.protected) for ids in clean]
        ids, mask = _pad(noisy, self.pad)
        labels, _ = _pad(clean, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _pad(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = -(-max(len(r) for r in rows) // 8) * 8
    out = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.as_tensor(row)
        mask[i, :len(row)] = 1
    return out, mask


@torch.no_grad()
def held_out_loss(model, held: Examples, collate: Infilling, seed: int, batch_size: int = 64) -> float:
    """Cross-entropy per token of the held-out sentences, corrupted the same way every time (seeded)."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for start in range(0, len(held), batch_size):
            batch = collate(held.items[start:start + batch_size])
            summed, n = nets.token_loss(model, {k: v.to(device) for k, v in batch.items()})
            total, count = total + summed, count + n
    return total / count if count else float("nan")
