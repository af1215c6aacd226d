"""Decoding (greedy or beam search, through `model.generate`) and scoring (sacreBLEU's BLEU and chrF).

Sentences are decoded in batches of similar source length, shortest first (danlu.inference.groups):
a batch runs until its longest hypothesis ends, so mixing a 5-token and a 60-token sentence costs the
short one 55 wasted steps times the beam. Each batch may write at most 2 x its longest source + 10
tokens (fairseq's max_len_a / max_len_b), capped by `max_new_tokens`: an undertrained model that
repeats itself stops there instead of at the cap.

Scores are corpus-level, on the detokenized text (the tokenizer's decoding gives back the text as
written), with sacreBLEU's own tokenization: `zh` for a Chinese target, character n-grams for Japanese
and Korean (whose MeCab tokenizers are extra packages), else its default `13a`. Each split records
the metrics' signatures, so a figure can be reproduced and compared.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch

from danlu.inference import groups

# Targets written without spaces between words, scored on sacreBLEU's character tokenization.
CHARACTER_SCORED = ("ja", "ko", "th", "lo", "km", "my")


def bleu_tokenizer(language: str) -> str:
    code = language.lower().replace("_", "-").split("-")[0]
    if code == "zh":
        return "zh"
    return "char" if code in CHARACTER_SCORED else "13a"


def score(hypotheses: list[str], references: list[str], language: str) -> dict:
    """BLEU and chrF of `hypotheses` against one reference each, with both signatures."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(tokenize=bleu_tokenizer(language)), CHRF()
    refs = [list(references)]
    return {"bleu": float(bleu.corpus_score(list(hypotheses), refs).score),
            "chrf": float(chrf.corpus_score(list(hypotheses), refs).score),
            "signature": {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())}}


def output_cap(longest_source: int, max_new_tokens: int) -> int:
    return max(1, min(max_new_tokens, 2 * longest_source + 10))


@torch.no_grad()
def translate_ids(model, tokenizer, sources: list[list[int]], beams: int, length_penalty: float,
                  max_new_tokens: int, batch_size: int = 32, bf16: bool = False, lock=None) -> list[str]:
    """The decoded translation of each encoded source, in input order.

    `lock`: held while the tokenizer decodes (a fast tokenizer is not safe to share between threads)."""
    model = model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    out: list[str] = [""] * len(sources)
    guard = lock if lock is not None else nullcontext()
    items = [{"input_ids": ids} for ids in sources]
    for group in groups(items, batch_size):
        width = max(len(sources[i]) for i in group)
        ids = torch.full((len(group), width), pad, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, i in enumerate(group):
            ids[row, :len(sources[i])] = torch.as_tensor(sources[i])
            mask[row, :len(sources[i])] = 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            generated = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), num_beams=beams,
                length_penalty=length_penalty, early_stopping=True, do_sample=False,
                max_new_tokens=output_cap(width, max_new_tokens), pad_token_id=pad)
        with guard:
            texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
        for i, text in zip(group, texts):
            out[i] = text
    return out


def timed(fn, *args, **kwargs):
    """(fn's result, seconds it took)."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
