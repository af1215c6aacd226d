"""Replies to many prompts at once, for evaluation: does each end with the end-of-turn token?

Prompts are batched (left-padded, shortest together) through `model.generate`, which stops a row at
the end-of-turn token (the chat tokenizer's eos). A prompt whose reply could run past the model's
positions goes through causal-lm's sampler one at a time instead, which slides its context as the
server does. Each batch is seeded, so the same model gives the same replies.
"""

from __future__ import annotations

import torch

from danlu.tasks.causal_lm.generate import prompt_ids, sample_ids

BATCH = 16


def positions(model) -> int | None:
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


@torch.no_grad()
def generate_replies(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float = 0.7,
                     top_k: int | None = 50, top_p: float | None = 0.95, seed: int = 0,
                     batch_size: int = BATCH) -> list[tuple[list[int], bool]]:
    """(reply ids without the end-of-turn token, whether the reply ended with it) per prompt."""
    model.eval()
    end = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    ids = [prompt_ids(tokenizer, p) for p in prompts]
    limit = positions(model) or float("inf")
    out: list = [None] * len(prompts)
    fits = sorted((i for i in range(len(ids)) if len(ids[i]) + max_new_tokens <= limit), key=lambda i: len(ids[i]))
    for i in sorted(set(range(len(ids))) - set(fits)):
        got = sample_ids(model, tokenizer, prompts[i], max_new_tokens, temperature, top_k, top_p, seed + i)
        out[i] = (got, len(got) < max_new_tokens)
    sampling = (dict(do_sample=True, temperature=temperature, top_k=top_k or 0, top_p=top_p or 1.0)
                if temperature > 0 else dict(do_sample=False))
    device = next(model.parameters()).device
    for b, start in enumerate(range(0, len(fits), batch_size)):
        chunk = fits[start:start + batch_size]
        width = max(len(ids[i]) for i in chunk)
        inputs = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            inputs[row, width - len(ids[i]):] = torch.as_tensor(ids[i])
            mask[row, width - len(ids[i]):] = 1
        torch.manual_seed(seed + b)
        written = model.generate(inputs.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                                 eos_token_id=end, pad_token_id=pad, **sampling)[:, width:].tolist()
        for row, i in enumerate(chunk):
            new = written[row]
            out[i] = (new[:new.index(end)], True) if end in new else (new, False)
    return out
