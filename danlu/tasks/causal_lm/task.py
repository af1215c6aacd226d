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

from typing import Annotated

from pydantic import BaseModel, Field

from danlu.errors import DanluError, DataError
from danlu.models import load_pretrained, resolve_pretrained, shape_of
from danlu.tasks.base import Task, read_meta
from danlu.train.tokenizer import train_tokenizer

MAX_PROMPT_CHARS = 100_000


class TextPrediction(BaseModel):
    text: str  # the continuation of the prompt (not the prompt itself)


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
    large_model = True
    encodes_thread_safely = False
    metrics_in_trainer = False  # the Trainer evaluates the loss only, no full-vocabulary logits per split

    def __init__(self, spec, recipe=None):
        super().__init__(spec, recipe)
        self.tokenizer = None
        self.block = recipe.model.max_length if recipe else 128
        self.seed = recipe.train.seed if recipe else 0
        self.sampling = recipe.generate.model_dump() if recipe else {}

    def pretrained_path(self) -> str | None:
        cfg = self.recipe.model
        return resolve_pretrained(cfg.from_, self.recipe.base_dir) if cfg.from_ else None

    def setup(self, train: pd.DataFrame, features=(), categorical=()) -> None:
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
        from danlu.train.fitting import choose_precision  # the engine's own choice, made the same way

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

    def encode(self, frame: pd.DataFrame, train: bool = False):
        """Fixed blocks that score every token once; the training split: random windows."""
        ids = self.token_ids(frame)
        if not train:
            return TokenBlocks(ids, self.block)
        if len(ids) <= self.block:
            raise DataError(f"the training text is {len(ids):,} tokens long; a training window needs more than "
                            f"model.max_length = {self.block}: give more text or lower model.max_length")
        return TokenWindows(ids, self.block, self.seed)

    def collate(self, items: list[dict]) -> dict:
        lengths = [len(item["input_ids"]) for item in items]
        width = max(lengths)
        ids = torch.full((len(items), width), self.tokenizer.eos_token_id, dtype=torch.long)
        for row, item in enumerate(items):
            ids[row, :lengths[row]] = torch.as_tensor(item["input_ids"])
        if min(lengths) == width:  # full blocks: no mask, so attention runs its plain causal path
            return {"input_ids": ids, "labels": ids.clone()}
        mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
        return {"input_ids": ids, "attention_mask": mask.long(), "labels": ids.masked_fill(~mask, -100)}

    # -- evaluation -------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, forward, dataset: TokenBlocks, batch_size: int = 32) -> dict:
        """Mean loss per predicted token over the whole split, one batch of logits at a time."""
        model = forward.model.eval()
        device = next(model.parameters()).device
        total, count = 0.0, 0
        for start in range(0, len(dataset), batch_size):
            batch = self.collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            batch = {k: v.to(device) for k, v in batch.items()}
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(model(**batch).loss.float()) * n
            count += n
        if not count:
            raise DataError("no text to evaluate: the split is shorter than two tokens")
        loss = total / count
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "n": count}

    def metrics(self, outputs, label_ids) -> dict:
        raise DanluError("a causal-lm run is measured by its loss per token (task.evaluate), not from logits")

    def to_json(self, outputs) -> list[dict]:
        return [{"text": str(text)} for text in outputs]

    def predict(self, forward, frame: pd.DataFrame, batch_size: int = 64, lock=None) -> list[dict]:
        """The continuation of each prompt, sampled with the recipe's `generate:` settings."""
        from danlu.tasks.causal_lm.generate import sample_ids

        options = {k: self.sampling[k] for k in ("max_new_tokens", "temperature", "top_k", "top_p", "seed")
                   if k in self.sampling}
        texts = [self.tokenizer.decode(sample_ids(forward.model, self.tokenizer, str(prompt), **options),
                                       skip_special_tokens=True) for prompt in frame["text"]]
        return self.to_json(texts)

    def generate(self, model, prompt: str, **options):
        from danlu.tasks.causal_lm.generate import TextStream

        return TextStream(model, self.tokenizer, prompt, **options)

    def chat_prompt(self, messages: list[dict]) -> str:
        """The tokenizer's chat template when it has one (a pretrained chat model's); otherwise a line
        "role: content" per message and "assistant:" for the model to continue."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"

    def after_training(self, model, frames: dict[str, pd.DataFrame]) -> tuple[dict, list]:
        from danlu.tasks.causal_lm.generate import report_samples

        cfg = self.recipe.generate
        if not cfg.samples:
            return {}, []
        samples, structure = report_samples(model, self.tokenizer, cfg, frames["train"]["text"])
        blocks = []
        for sample in samples:
            blocks += [("text", f"prompt: {sample['prompt']!r}"), ("pre", sample["prompt"] + sample["text"])]
        return ({"generation": structure} if structure else {}), [("Samples", blocks)]

    # -- baseline ----------------------------------------------------------------------
    def baseline(self, frames: dict[str, pd.DataFrame], splits: list[str]) -> dict:
        from danlu.evaluate.baselines import unigram

        train = self.token_ids(frames["train"])
        return {split: {"unigram": unigram(train, self.token_ids(frames[split]), len(self.tokenizer))}
                for split in splits if split in frames and len(frames[split])}

    def baseline_names(self) -> dict[str, str]:
        return {"unigram": "every token drawn from its frequency in the training text"}

    # -- pretraining -----------------------------------------------------------------------
    def pretrain(self, objective: str, train: pd.DataFrame, out: Path, say, callbacks=()) -> dict:
        from danlu.tasks.causal_lm.pretrain import pretrain_clm_stage

        return pretrain_clm_stage(self, train, out, say, callbacks)

    # -- inputs from outside -------------------------------------------------------------
    def frame_from_value(self, value: str) -> pd.DataFrame:
        return pd.DataFrame({"text": [value]})

    def request_item(self):
        return Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]

    def rows_from_request(self, inputs: list) -> list[dict]:
        return [{"text": value} for value in inputs]

    def response_item(self) -> type[BaseModel]:
        return TextPrediction

    def card(self) -> dict:
        return {**super().card(), "input": "text"}

    def input_facts(self) -> dict:
        kind = "the pretrained model's" if self.recipe.model.from_ else f"{self.recipe.tokenizer.kind}, trained"
        return {"tokenizer": kind, "vocabulary": len(self.tokenizer), "block (tokens)": self.block}

    # -- saving -----------------------------------------------------------------
    def save(self, model, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
        self.save_meta(out_dir, max_length=self.block, generate=self.sampling)

    def load(self, model_dir: Path):
        meta = read_meta(model_dir)
        self.block = meta.get("max_length", 128)
        self.sampling = meta.get("generate") or {}
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return AutoModelForCausalLM.from_pretrained(model_dir)
