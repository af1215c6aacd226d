"""The model and vocabulary of a translation run built from scratch.

Architecture: transformers' M2M100 classes (fairseq's Transformer): sinusoidal positions, embeddings
scaled by sqrt(d), one vocabulary shared by the encoder, the decoder and the output layer, and the
layer norm *before* each sublayer (pre-norm, Xiong et al. 2020). Why this one for a CPU:
- pre-norm trains stably at a high learning rate with a short warmup, so a budget of a few thousand
  steps is spent learning rather than warming up (Marian and BART normalise after each sublayer, as
  the original Transformer did, and want long warmups);
- sinusoidal positions have no weights to learn from 29k sentences (BART learns its positions);
- the shipped Multi30k recipe trains at 2.2 steps/s of 64 pairs on the 2-core EPYC (docs/recipes.md);
  T5's relative position buckets and gated feed-forward layers cost more per token.

The vocabulary is one subword tokenizer trained on both sides of the training text (danlu.train.tokenizer:
byte-level BPE by default, or characters), so one embedding matrix serves both languages and any script
(Chinese included) encodes without an unknown token. Its end-of-text token becomes the padding (id 0:
M2M100 counts its positions from the padding id) and `</s>`, appended to every sentence, ends a sentence
and starts the decoder, as in fairseq; `<mask>` is there for the denoising pretraining.
"""

from __future__ import annotations

import torch
from tokenizers import processors
from torch import nn
from transformers import M2M100Config, M2M100ForConditionalGeneration

from danlu.errors import DanluError
from danlu.train.tokenizer import train_tokenizer

EOS = "</s>"
MASK = "<mask>"
# Named sizes: tiny after the small-data Transformers of Multi30k (Wu et al. 2021 found smaller models
# better on it), small = fairseq's transformer_iwslt_de_en, base = Vaswani et al.'s base.
SIZES = {
    "tiny": dict(layers=3, embedding=256, heads=4, feed_forward=1024),
    "small": dict(layers=6, embedding=512, heads=4, feed_forward=1024),
    "base": dict(layers=6, embedding=512, heads=8, feed_forward=2048),
}


def shared_tokenizer(texts: list[str], cfg):
    """One tokenizer for both languages (recipe `tokenizer:`), each sentence ended by `</s>`."""
    tokenizer = train_tokenizer(texts, cfg.kind, cfg.vocab_size, cfg.min_frequency, cfg.lowercase)
    tokenizer.add_special_tokens({"eos_token": EOS, "mask_token": MASK})
    # Saved in tokenizer.json: AutoTokenizer appends </s> too, without danlu.
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", special_tokens=[(EOS, tokenizer.eos_token_id)])
    return tokenizer


def shape(model_cfg, decoder_layers: int | None = None) -> dict:
    """The named size with the recipe's overrides (model.layers / embedding / heads / feed_forward)."""
    found = dict(SIZES[model_cfg.size])
    for key in ("layers", "embedding", "heads", "feed_forward"):
        value = getattr(model_cfg, key)
        if value is not None:
            found[key] = value
    if found["embedding"] % found["heads"]:
        raise DanluError(f"model.embedding ({found['embedding']}) must be divisible by model.heads ({found['heads']})")
    found["decoder_layers"] = decoder_layers or found["layers"]
    return found


def build(tokenizer, model_cfg, decoder_layers: int | None = None) -> M2M100ForConditionalGeneration:
    size = shape(model_cfg, decoder_layers)
    dropout = 0.1 if model_cfg.dropout is None else model_cfg.dropout
    eos = tokenizer.eos_token_id
    config = M2M100Config(
        vocab_size=len(tokenizer), d_model=size["embedding"],
        encoder_layers=size["layers"], decoder_layers=size["decoder_layers"],
        encoder_attention_heads=size["heads"], decoder_attention_heads=size["heads"],
        encoder_ffn_dim=size["feed_forward"], decoder_ffn_dim=size["feed_forward"],
        activation_function=model_cfg.activation, dropout=dropout, attention_dropout=0.0, activation_dropout=0.0,
        encoder_layerdrop=0.0, decoder_layerdrop=0.0,  # M2M100's default drops 5% of the layers
        max_position_embeddings=model_cfg.max_length + 2, scale_embedding=True, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=eos, bos_token_id=eos, decoder_start_token_id=eos,
    )
    return M2M100ForConditionalGeneration(config)


def smooth_labels(model: nn.Module, epsilon: float) -> nn.Module:
    """Label-smoothed cross-entropy (Szegedy et al. 2016) while the model trains.

    A forward hook replaces the loss, so the model stays its plain transformers class: it saves and
    loads as itself, and its evaluation loss is the plain cross-entropy per token."""
    if not epsilon:
        return model

    def smoothed(module, args, kwargs, output):
        labels = kwargs.get("labels")
        if labels is None or not module.training:
            return output
        logits = output.logits
        output.loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                                  ignore_index=-100, label_smoothing=epsilon)
        return output

    model.register_forward_hook(smoothed, with_kwargs=True)
    return model


@torch.no_grad()
def token_loss(model, batch: dict) -> tuple[float, int]:
    """(summed cross-entropy, tokens scored) of one collated batch, teacher-forced."""
    labels = batch["labels"]
    logits = model(**batch).logits
    total = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                        ignore_index=-100, reduction="sum")
    return float(total), int((labels != -100).sum())
