"""Self-supervised pretraining of an encoder with masked language modelling (MLM), and the joint
objective L = w_pre * L_mlm + w_fin * L_task.

Pretraining packs the corpus into full blocks ([CLS] text [SEP] text [SEP] ...), masks 15% of the
tokens with transformers' DataCollatorForLanguageModeling (80% [MASK], 10% random, 10% kept), and
trains a BertForMaskedLM with the same shape as the classifier that follows, so its encoder
weights load straight into BertForSequenceClassification.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import BertForMaskedLM, DataCollatorForLanguageModeling, PretrainedConfig
from transformers.models.bert.modeling_bert import BertPredictionHeadTransform
from transformers.modeling_outputs import MaskedLMOutput, SequenceClassifierOutput

from danlu.errors import DanluError
from danlu.run import Run, save_atomically
from danlu.train.examples import Examples


def pack_blocks(tokenizer, texts: list[str], block_size: int) -> Examples:
    """Concatenate tokenized texts with [SEP] and cut them into blocks that each start with [CLS]."""
    if block_size < 8:
        raise DanluError("pretrain.block_size must be at least 8")
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    stream: list[int] = []
    for piece in ids:
        if piece:
            stream.extend(piece + [tokenizer.sep_token_id])
    if not stream:
        raise DanluError("the pretraining corpus has no text (every line is empty)")
    body = block_size - 1
    blocks = [[tokenizer.cls_token_id] + stream[i:i + body] for i in range(0, len(stream), body)]
    return Examples([{"input_ids": b, "attention_mask": [1] * len(b)} for b in blocks])


def mlm_collator(tokenizer, mask_prob: float):
    return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=mask_prob, pad_to_multiple_of=8)


def pretrain_mlm(model, tokenizer, texts: list[str], train_cfg, out_dir: Path, mask_prob: float,
                 block_size: int, seed: int, callbacks=()) -> dict:
    """Train a masked-LM model (or a BertForMaskedLM built from a config) on `texts`; save it to
    out_dir/model; return loss and perplexity. Checkpoints go to out_dir/checkpoints, and a run
    interrupted there resumes from the newest one."""
    from danlu.train.engine import fit

    blocks = pack_blocks(tokenizer, texts, block_size)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(blocks))
    held = max(1, len(blocks) // 20)  # 5% of the blocks measure perplexity
    train = Examples([blocks.items[i] for i in order[held:]])
    held_out = Examples([blocks.items[i] for i in order[:held]])
    if isinstance(model, PretrainedConfig):
        torch.manual_seed(seed)
        model = BertForMaskedLM(model)
    result = fit(MaskedOnly(model), train, held_out, mlm_collator(tokenizer, mask_prob), train_cfg,
                 Run(out_dir).checkpoints, Run(out_dir).history_path, compute_metrics=None, metric=None,
                 greater_is_better=False, large_model=True, callbacks=list(callbacks))
    evals = [h["eval_loss"] for h in result.history if "eval_loss" in h]
    loss = evals[-1] if evals else float("nan")
    trained = result.model.mlm
    save_atomically(Run(out_dir).model_dir, lambda tmp: (trained.save_pretrained(tmp),
                                                          tokenizer.save_pretrained(tmp)))
    return {"objective": "mlm", "blocks": len(blocks), "eval_loss": loss, "perplexity": math.exp(loss) if evals else None,
            "steps": result.steps, "seconds": round(result.seconds, 1), "history": result.history}


class MaskedOnly(nn.Module):
    """A BertForMaskedLM whose vocabulary projection runs on the masked tokens only.

    BertForMaskedLM scores every position against the whole vocabulary, though only the 15% masked
    ones count in the loss: for a small encoder that projection is most of the compute (tiny BERT,
    8,000 words: 1M of its 1.2M multiply-adds per token). Same loss, same weights, a fraction of the work.
    """

    _keys_to_ignore_on_save = None  # read by Trainer when it resumes a checkpoint

    def __init__(self, mlm):
        super().__init__()
        self.mlm = mlm
        self.config = mlm.config

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None):
        hidden = self.mlm.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
        picked = labels != -100
        scores = self.mlm.cls(hidden[picked])
        loss = nn.functional.cross_entropy(scores.float(), labels[picked])
        return MaskedLMOutput(loss=loss, logits=scores)

    def state_dict(self, *args, **kwargs):
        # The output projection is tied to the word embeddings (one tensor under two names), which
        # safetensors refuses to store twice in a checkpoint; loading one name restores both.
        state, seen = super().state_dict(*args, **kwargs), set()
        for key in list(state):
            ptr = state[key].data_ptr()
            if ptr in seen:
                del state[key]
            seen.add(ptr)
        return state


class JointModel(nn.Module):
    """A classifier trained together with an MLM objective on the same batches.

    Each batch goes through the shared encoder twice: as is, for the task loss, and masked, for
    the MLM loss, whose output layer is tied to the word embeddings as in BERT. Only `classifier`
    (a plain BertForSequenceClassification) is saved at the end: the MLM head is scaffolding.
    """

    def __init__(self, classifier, tokenizer, w_pre: float, w_fin: float, mask_prob: float = 0.15):
        super().__init__()
        self.classifier = classifier
        self.mlm_transform = BertPredictionHeadTransform(classifier.config)
        self.mlm_bias = nn.Parameter(torch.zeros(classifier.config.vocab_size))
        self.masker = mlm_collator(tokenizer, mask_prob)
        self.w_pre, self.w_fin = w_pre, w_fin
        self.config = classifier.config

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None):
        out = self.classifier(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                              labels=labels)
        if not self.training or labels is None:
            return out
        masked, mlm_labels = self.masker.torch_mask_tokens(input_ids.clone())
        mlm_labels = mlm_labels.masked_fill(attention_mask == 0, -100)
        hidden = self.classifier.bert(input_ids=masked, attention_mask=attention_mask).last_hidden_state
        embeddings = self.classifier.bert.embeddings.word_embeddings.weight
        scores = nn.functional.linear(self.mlm_transform(hidden), embeddings, self.mlm_bias)  # (B, T, V)
        mlm_loss = nn.functional.cross_entropy(scores.flatten(0, 1).float(), mlm_labels.flatten(), ignore_index=-100)
        return SequenceClassifierOutput(loss=self.w_fin * out.loss + self.w_pre * mlm_loss, logits=out.logits)


def pretrain_settings(recipe):
    """The training settings for pretraining: the recipe's `train:` with pretrain's own budget."""
    cfg = recipe.pretrain
    update = {"epochs": cfg.epochs, "max_steps": cfg.max_steps, "early_stopping": None}
    for key in ("lr", "batch_size", "warmup"):
        if getattr(cfg, key) is not None:
            update[key] = getattr(cfg, key)
    return recipe.train.model_copy(update=update)


def corpus_tokenizer(recipe, vocab_texts: list[str], out: Path, train_tokenizer):
    """The pretrained model's tokenizer; from scratch, one trained on the corpus and saved first,
    so that a resumed pretraining reads its checkpoints with the very same vocabulary."""
    from transformers import AutoTokenizer

    from danlu.models import load_pretrained, resolve_pretrained

    if recipe.model.from_:
        return load_pretrained(AutoTokenizer, resolve_pretrained(recipe.model.from_, recipe.base_dir))
    saved = out / "tokenizer"
    if (saved / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(saved)
    tokenizer = train_tokenizer(vocab_texts)
    save_atomically(saved, tokenizer.save_pretrained)
    return tokenizer
