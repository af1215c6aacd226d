"""Text classification: a string -> a class.

From scratch, a tokenizer (WordPiece, BPE, characters or byte-level BPE) is trained on the training
text and a BERT-style encoder of a named size is built from a config; from a pretrained directory (or
a run, or a packaged model) the tokenizer and weights are loaded and a new classification head is
added. The saved model loads with AutoModelForSequenceClassification.from_pretrained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
from pydantic import Field
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, BertConfig,
                          BertForSequenceClassification, DataCollatorWithPadding)

from danlu.errors import DanluError
from danlu.models import load_pretrained, load_with_new_head, resolve_pretrained, shape_of
from danlu.tasks.base import Task
from danlu.tasks.classifier import Classifier
from danlu.train.examples import Examples
from danlu.train.tokenizer import train_tokenizer

MAX_TEXT_CHARS = 100_000  # one input of a request; longer texts are cut to max_length tokens anyway
UNKNOWN_SAMPLE = 2000  # training texts on which a pretrained tokenizer's unknown-token share is measured
MAX_UNKNOWN = 0.05  # above this share of [UNK] tokens a pretrained tokenizer does not fit the text


class TextClassification(Classifier, Task):
    large_model = True
    group_by_length = True
    encodes_thread_safely = False

    def __init__(self, spec, recipe=None):
        super().__init__(spec, recipe)
        self.tokenizer = None
        self.max_length = recipe.model.max_length if recipe else 128
        self._collator = None
        self.unknown_share: float | None = None

    def pretrained_path(self) -> str | None:
        cfg = self.recipe.model
        return resolve_pretrained(cfg.from_, self.recipe.base_dir) if cfg.from_ else None

    def setup(self, train: pd.DataFrame, features=(), categorical=()) -> None:
        self.fit_labels(train["label"])
        path = self.pretrained_path()
        if path:
            self.tokenizer = load_pretrained(AutoTokenizer, path)
            self.unknown_share = unknown_share(self.tokenizer, train["text"].astype(str).head(UNKNOWN_SAMPLE))
        else:
            tok = self.recipe.tokenizer
            self.tokenizer = train_tokenizer(train["text"].astype(str).tolist(), tok.kind, tok.vocab_size,
                                             tok.min_frequency, tok.lowercase)
        self.tokenizer.model_max_length = self.max_length

    def notes(self) -> list[str]:
        if self.unknown_share is None or self.unknown_share <= MAX_UNKNOWN:
            return []
        return [f"the tokenizer of model.from ({self.recipe.model.from_}) maps {self.unknown_share:.0%} of the "
                "training tokens to its unknown token: it does not fit this text (another language or script?). "
                "Train one instead: drop model.from and set tokenizer.kind (char suits Chinese)"]

    def input_facts(self) -> dict:
        kind = ("the pretrained model's" if self.unknown_share is not None
                else f"{self.recipe.tokenizer.kind}, trained on the training text")
        facts = {"tokenizer": kind, "vocabulary": len(self.tokenizer), "max_length": self.max_length}
        if self.unknown_share is not None:
            facts["unknown tokens (train)"] = f"{self.unknown_share:.1%}"
        return facts

    def build_model(self):
        cfg = self.recipe.model
        path = self.pretrained_path()
        if path:
            return load_with_new_head(AutoModelForSequenceClassification, path, cfg.dropout, **self.head_labels())
        return BertForSequenceClassification(self.bert_config(**self.head_labels()))

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

    def encode(self, frame: pd.DataFrame, train: bool = False) -> Examples:
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

    def collate(self, items: list[dict]) -> dict:
        if self._collator is None:
            # Padding to a multiple of 8 keeps the number of distinct shapes small (compiled kernels).
            self._collator = DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=8, return_tensors="pt")
        return self._collator(items)

    def attribution_units(self, batch: dict) -> list[list[tuple[str, list[int]]]]:
        out = []
        for ids, mask in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist()):
            tokens = self.tokenizer.convert_ids_to_tokens([i for i, m in zip(ids, mask) if m])
            out.append([(token, [at]) for at, token in enumerate(tokens)])
        return out

    # -- baseline: TF-IDF over character n-grams, which works for words and for Chinese alike ----------
    def baseline_features(self, train: pd.DataFrame, frames: dict[str, pd.DataFrame]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=2, sublinear_tf=True,
                                     max_features=200_000, lowercase=True)
        x_train = vectorizer.fit_transform(train["text"].astype(str))
        return x_train, {s: vectorizer.transform(f["text"].astype(str)) for s, f in frames.items()}

    def baseline_names(self) -> dict[str, str]:
        return {"majority": "always the most frequent training class",
                "linear": "logistic regression on TF-IDF character 1-4-grams"}

    # -- pretraining -----------------------------------------------------------------------
    def pretrain(self, objective: str, train: pd.DataFrame, out: Path, say, callbacks=()) -> dict:
        from danlu.tasks.text_classification.pretrain import pretrain_mlm_stage

        return pretrain_mlm_stage(self, train, out, say, callbacks)

    # -- inputs from outside -------------------------------------------------------------
    def frame_from_value(self, value: str) -> pd.DataFrame:
        return pd.DataFrame({"text": [value]})

    def request_item(self):
        return Annotated[str, Field(max_length=MAX_TEXT_CHARS)]

    def rows_from_request(self, inputs: list) -> list[dict]:
        return [{"text": value} for value in inputs]

    # -- saving --------------------------------------------------------------------------
    def save(self, model, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
        self.save_meta(out_dir, **self.label_meta(), max_length=self.max_length)

    def load(self, model_dir: Path):
        from danlu.tasks.base import read_meta

        meta = read_meta(model_dir)
        self.load_labels(meta)
        self.max_length = meta.get("max_length", 128)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return AutoModelForSequenceClassification.from_pretrained(model_dir)


def unknown_share(tokenizer, texts) -> float:
    """The share of tokens `tokenizer` maps to its unknown token over `texts` (0 when it has none)."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return 0.0
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    total = sum(len(i) for i in ids)
    return sum(i.count(unk) for i in ids) / total if total else 0.0
