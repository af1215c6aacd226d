"""Causal language modelling: a GPT-2 style decoder learns to predict the next token of a corpus.

The corpus is the `text` column (a txt file is one text; jsonl/csv rows and JSON records are
documents, joined by an end-of-text token). It is tokenized once into one stream of ids. Training
reads random windows of `model.max_length` tokens from it, as nanoGPT does, each window seeded by
(seed, epoch, index) so that every epoch sees fresh windows and a resumed run sees the same ones.
Validation and test read fixed blocks that score every token once. The loss is the mean
cross-entropy per token; perplexity is its exponential. The saved model loads with
AutoModelForCausalLM + AutoTokenizer.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from danlu.errors import DanluError, DataError
from danlu.models import load_pretrained, resolve_pretrained, shape_of
from danlu.tasks.base import Task
from danlu.train.tokenizer import train_tokenizer


class TokenWindows(Dataset):
    """Random windows of `block` tokens; an epoch is as many windows as cover the stream once."""

    def __init__(self, ids: np.ndarray, block: int, seed: int = 0):
        self.ids, self.block, self.seed, self.epoch = ids, block, seed, 0

    def set_epoch(self, epoch: int) -> None:  # Trainer calls this at the start of every epoch
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return max(1, (len(self.ids) - 1) // self.block)

    def __getitem__(self, i: int) -> dict:
        start = np.random.default_rng([self.seed, self.epoch, i]).integers(0, len(self.ids) - self.block + 1)
        return {"input_ids": self.ids[start:start + self.block]}

    def tokens(self) -> int:
        return len(self.ids)


class TokenBlocks(Dataset):
    """Fixed blocks that score every token but the first exactly once.

    The model predicts tokens 2..n of a block from the ones before them, so consecutive blocks
    overlap by one token (stride block - 1): nothing is skipped and nothing is counted twice.
    """

    def __init__(self, ids: np.ndarray, block: int):
        self.ids, self.block = ids, block
        self.starts = list(range(0, max(len(ids) - 1, 0), block - 1))

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[self.starts[i]:self.starts[i] + self.block]}

    def tokens(self) -> int:
        return max(len(self.ids) - 1, 0)  # tokens scored


class CausalLM(Task):
    name = "causal-lm"
    kind = "language-model"
    roles = ("text",)
    input_roles = ("text",)
    large_model = True
    # Trainer evaluates the loss only: no full-vocabulary logits are gathered for the whole split.
    trainer_metrics = None

    def __init__(self, recipe=None):
        super().__init__(recipe)
        self.tokenizer = None
        self.block = recipe.model.max_length if recipe else 128
        self.seed = recipe.train.seed if recipe else 0

    def pretrained_path(self) -> str | None:
        cfg = self.recipe.model
        return resolve_pretrained(cfg.from_, self.recipe.base_dir) if cfg.from_ else None

    def setup(self, train: pd.DataFrame, features=None, categorical=None) -> None:
        texts = train["text"].astype(str).tolist()
        if not any(t.strip() for t in texts):
            raise DataError("the training corpus has no text")
        path = self.pretrained_path()
        if path:
            self.tokenizer = load_pretrained(AutoTokenizer, path)
            if self.tokenizer.eos_token is None:
                raise DanluError(f"model.from: the tokenizer of '{path}' has no end-of-text token")
        else:
            tok = self.recipe.tokenizer
            self.tokenizer = train_tokenizer(texts, tok.kind, tok.vocab_size, tok.min_frequency, tok.lowercase)
        self.tokenizer.model_max_length = self.block

    def build_model(self):
        cfg = self.recipe.model
        dropout = 0.0 if cfg.dropout is None else cfg.dropout
        path = self.pretrained_path()
        attention = {"attn_implementation": "eager"} if self._eager_attention() else {}
        if path:
            extra = {} if cfg.dropout is None else dict(resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout)
            model = load_pretrained(AutoModelForCausalLM, path, **extra, **attention)
            limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", 0)
            if limit and self.block > limit:
                raise DanluError(f"model.max_length: {self.block} is longer than the {limit} positions of '{path}'")
            return model
        if (cfg.arch or "gpt") != "gpt":
            raise DanluError(f"model.arch: causal-lm builds 'gpt' decoders, not '{cfg.arch}'")
        shape = shape_of(cfg.model_copy(update={"arch": "gpt"}))
        eos = self.tokenizer.eos_token_id
        config = GPT2Config(
            vocab_size=len(self.tokenizer), n_positions=self.block, n_embd=shape["embedding"],
            n_layer=shape["layers"], n_head=shape["heads"], n_inner=shape["feed_forward"],
            activation_function=cfg.activation,
            resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
            # No pad id, as GPT-2: the end-of-text token inside a training block separates documents
            # and must be attended to, not taken for padding.
            bos_token_id=eos, eos_token_id=eos, **attention,
        )
        return GPT2LMHeadModel(config)

    def _eager_attention(self) -> bool:
        # On a CPU, PyTorch's fused attention (SDPA) runs its backward pass in bf16 several times
        # slower than in fp32 (Shakespeare model: 18 of a step's 41 ms), while bf16 matmuls are fast:
        # with bf16 training on a CPU the attention is computed by plain matmuls, 24 ms per step
        # (benchmarks/RESULTS.md). A saved model loads with the default attention again.
        from danlu.train.engine import choose_precision  # the engine's own choice, made the same way

        return not torch.cuda.is_available() and choose_precision(self.recipe.train.precision, True) == "bf16"

    # -- data -------------------------------------------------------------------
    def token_ids(self, frame: pd.DataFrame) -> np.ndarray:
        """The documents as one stream of ids, an end-of-text token between documents."""
        texts = [t for t in frame["text"].astype(str).tolist() if t]
        enc = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        eos = self.tokenizer.eos_token_id
        ids: list[int] = []
        for i, doc in enumerate(enc):
            if i:
                ids.append(eos)
            ids.extend(doc)
        return np.asarray(ids, dtype=np.int64)

    def encode(self, frame: pd.DataFrame) -> TokenBlocks:
        return TokenBlocks(self.token_ids(frame), self.block)

    def encode_train(self, frame: pd.DataFrame) -> TokenWindows:
        ids = self.token_ids(frame)
        if len(ids) <= self.block:
            raise DataError(f"the training text is {len(ids):,} tokens long; a training window needs more than "
                            f"model.max_length = {self.block}: give more text or lower model.max_length")
        return TokenWindows(ids, self.block, self.seed)

    def collate(self, batch: list[dict]) -> dict:
        lengths = [len(item["input_ids"]) for item in batch]
        width = max(lengths)
        ids = torch.full((len(batch), width), self.tokenizer.eos_token_id, dtype=torch.long)
        for row, item in enumerate(batch):
            ids[row, :lengths[row]] = torch.as_tensor(item["input_ids"])
        if min(lengths) == width:  # full blocks: no mask, so attention runs its plain causal path
            return {"input_ids": ids, "labels": ids.clone()}
        mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
        return {"input_ids": ids, "attention_mask": mask.long(), "labels": ids.masked_fill(~mask, -100)}

    # -- evaluation -------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model, dataset: TokenBlocks, batch_size: int = 32) -> dict:
        """Mean loss per predicted token over the whole split, one batch of logits at a time."""
        model.eval()
        device = next(model.parameters()).device
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=self.collate)
        total, count = 0.0, 0
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(model(**batch).loss.float()) * n
            count += n
        if not count:
            raise DataError("no text to evaluate: the split is shorter than two tokens")
        loss = total / count
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "n": count}

    def metrics(self, logits, label_ids) -> dict:
        raise DanluError("causal-lm runs are measured with task.evaluate (loss and perplexity)")

    def to_json(self, logits) -> list[dict]:
        raise DanluError("a causal-lm run writes text: use `danlu generate RUN \"prompt\"`")

    # -- saving -----------------------------------------------------------------
    def save(self, model, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
        self.save_meta(out_dir, max_length=self.block)

    @classmethod
    def load(cls, model_dir: Path):
        meta = cls.read_meta(model_dir)
        task = cls()
        task.block = meta.get("max_length", 128)
        task.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return task, AutoModelForCausalLM.from_pretrained(model_dir)

