"""Masked language modelling for the text classifier: a BERT-style encoder learns to fill in masked
tokens of the corpus, then the classifier starts from its weights."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from transformers import BertForMaskedLM

from danlu.models import load_pretrained, resolve_pretrained
from danlu.train.corpus import load_corpus
from danlu.train.pretrain import corpus_tokenizer, pretrain_mlm, pretrain_settings
from danlu.train.tokenizer import train_tokenizer


def pretrain_mlm_stage(task, train: pd.DataFrame, out: Path, say, callbacks=()) -> dict:
    recipe = task.recipe
    cfg = recipe.pretrain
    texts = load_corpus(cfg, train, recipe.base_dir)
    say(f"pretrain: mlm on {len(texts):,} texts")
    # The vocabulary also covers the task's own text, or a character tokenizer trained on an external
    # corpus alone would not know the characters the task is written in.
    own = train["text"].astype(str).tolist() if cfg.corpus and "text" in train else []
    tok = recipe.tokenizer
    tokenizer = corpus_tokenizer(recipe, texts + own, out, lambda vocab: train_tokenizer(
        vocab, tok.kind, tok.vocab_size, tok.min_frequency, tok.lowercase))
    block = cfg.block_size or recipe.model.max_length
    if recipe.model.from_:  # continued pretraining of a checkpoint (domain adaptation)
        model = load_pretrained(BertForMaskedLM, resolve_pretrained(recipe.model.from_, recipe.base_dir))
    else:
        task.tokenizer = tokenizer
        torch.manual_seed(recipe.train.seed)
        model = BertForMaskedLM(task.bert_config(positions=block))
    return pretrain_mlm(model, tokenizer, texts, pretrain_settings(recipe), out, cfg.masked_share, block,
                        recipe.train.seed, callbacks=list(callbacks))
