"""Text classification: a string -> a class.

From scratch, a WordPiece/BPE tokenizer is trained on the training text and a BERT-style
encoder of a named size is built from a config; from a pretrained directory (or a run, or a
packaged model) the tokenizer and weights are loaded and a new classification head is added.
The saved model loads with AutoModelForSequenceClassification.from_pretrained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, BertConfig,
                          BertForSequenceClassification, DataCollatorWithPadding)

from danlu.errors import DanluError
from danlu.models import load_pretrained, resolve_pretrained, shape_of
from danlu.tasks.base import Examples, Task
from danlu.train.tokenizer import train_tokenizer


class TextClassification(Task):
    name = "text-classification"
    roles = ("text", "label")
    input_roles = ("text",)
    large_model = True
    group_by_length = True

    def __init__(self, recipe=None):
        super().__init__(recipe)
        self.tokenizer = None
        self.max_length = recipe.model.max_length if recipe else 128
        self._collator = None

    def pretrained_path(self) -> str | None:
        cfg = self.recipe.model
        return resolve_pretrained(cfg.from_, self.recipe.base_dir) if cfg.from_ else None

    def setup(self, train: pd.DataFrame, features=None, categorical=None) -> None:
        self.fit_labels(train["label"])
        path = self.pretrained_path()
        if path:
            self.tokenizer = load_pretrained(AutoTokenizer, path)
        else:
            tok = self.recipe.tokenizer
            self.tokenizer = train_tokenizer(train["text"].astype(str).tolist(), tok.kind, tok.vocab_size,
                                             tok.min_frequency, tok.lowercase)
        self.tokenizer.model_max_length = self.max_length

    def build_model(self):
        cfg = self.recipe.model
        labels = dict(num_labels=len(self.labels), id2label=self.id2label,
                      label2id={v: k for k, v in self.id2label.items()})
        path = self.pretrained_path()
        if path:
            extra = {}
            if cfg.dropout is not None:
                extra = dict(hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
            # The checkpoint's own head (if any) has other classes: a new one is initialised.
            return load_pretrained(AutoModelForSequenceClassification, path, ignore_mismatched_sizes=True,
                                   **labels, **extra)
        return BertForSequenceClassification(self.bert_config(**labels))

    def bert_config(self, positions: int | None = None, **extra) -> BertConfig:
        """The encoder's shape from the recipe (named size + overrides), for the trained tokenizer;
        MLM pretraining builds its BertForMaskedLM from the same config."""
        cfg = self.recipe.model
        if (cfg.arch or "bert") != "bert":
            raise DanluError(f"model.arch: text classification builds 'bert' encoders, not '{cfg.arch}'")
        shape = shape_of(cfg.model_copy(update={"arch": "bert"}))
        dropout = 0.1 if cfg.dropout is None else cfg.dropout
        return BertConfig(
            vocab_size=len(self.tokenizer), hidden_size=shape["embedding"], num_hidden_layers=shape["layers"],
            num_attention_heads=shape["heads"], intermediate_size=shape["feed_forward"],
            hidden_act=cfg.activation or "gelu", hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
            max_position_embeddings=max(self.max_length, positions or 0, 8), pad_token_id=self.tokenizer.pad_token_id,
            **extra,
        )

    def encode(self, frame: pd.DataFrame) -> Examples:
        enc = self.tokenizer(frame["text"].astype(str).tolist(), truncation=True, max_length=self.max_length)
        y = self.label_ids(frame["label"]) if "label" in frame.columns else None
        items = []
        for i, ids in enumerate(enc["input_ids"]):
            item = {"input_ids": ids, "attention_mask": enc["attention_mask"][i]}
            if "token_type_ids" in enc:
                item["token_type_ids"] = enc["token_type_ids"][i]
            if y is not None:
                item["labels"] = int(y[i])
            items.append(item)
        return Examples(items)

    def collate(self, batch: list[dict]) -> dict:
        if self._collator is None:
            # Padding to a multiple of 8 keeps the number of distinct shapes small (compiled kernels).
            self._collator = DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=8, return_tensors="pt")
        return self._collator(batch)

    def tokens_in(self, dataset: Examples) -> int:
        return int(sum(len(item["input_ids"]) for item in dataset.items))

    def save(self, model, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
        self.save_meta(out_dir, max_length=self.max_length)

    @classmethod
    def load(cls, model_dir: Path):
        meta = cls.read_meta(model_dir)
        task = cls()
        task.labels, task.max_length = meta["labels"], meta.get("max_length", 128)
        task.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return task, AutoModelForSequenceClassification.from_pretrained(model_dir)



def token_lengths(dataset: Examples) -> np.ndarray:
    return np.asarray([len(item["input_ids"]) for item in dataset.items])
