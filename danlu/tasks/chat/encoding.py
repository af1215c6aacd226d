"""Conversations -> token ids with labels on the reply tokens, packed rows, batches.

A conversation is rendered with the chat template and tokenized once, whole, as the model will
read it when it serves; a token is a label when its first character lies inside a reply (up to
and with the end-of-turn token), every other label is -100. `loss: all` labels every token.

Packing puts several short training conversations in one row of at most `model.max_length`
tokens. Each conversation's position ids start again at 0 and the batch carries no attention
mask: transformers then reads the row as packed sequences and builds a block-diagonal causal mask,
so no token attends to another conversation. `packs_safely` checks that on the model itself (a
packed row must give the logits of its conversations alone); where it does not, rows are single
conversations, batched by length.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from danlu.tasks.chat.template import reply_spans

IGNORE = -100


@dataclass
class Encoded:
    ids: np.ndarray
    labels: np.ndarray
    truncated: bool  # longer than the block: cut at its end

    @property
    def learns(self) -> bool:
        return bool((self.labels != IGNORE).any())


def encode_conversation(tokenizer, template: str, end: str, messages: list[dict], block: int,
                        loss: str = "assistant") -> Encoded:
    text, spans = reply_spans(tokenizer, template, messages, end)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    starts = np.asarray([start for start, _ in enc["offset_mapping"]], dtype=np.int64)
    inside = np.zeros(len(ids), dtype=bool)
    for start, stop in spans:
        inside |= (starts >= start) & (starts < stop)
    labels = ids.copy() if loss == "all" else np.where(inside, ids, IGNORE)
    return Encoded(ids[:block], labels[:block], len(ids) > block)


def pack(lengths: list[int], capacity: int) -> list[list[int]]:
    """Rows of indices whose lengths add up to at most `capacity`: best fit, longest first."""
    rows: list[list[int]] = []
    room: list[tuple[int, int]] = []  # (free tokens, row), sorted
    for i in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        at = bisect.bisect_left(room, (lengths[i], -1))
        if at == len(room):
            rows.append([i])
            bisect.insort(room, (capacity - lengths[i], len(rows) - 1))
        else:
            free, row = room.pop(at)
            rows[row].append(i)
            bisect.insort(room, (free - lengths[i], row))
    return rows


def packed_rows(examples: list[Encoded], capacity: int) -> list[dict]:
    """The examples packed; a conversation's first token is never a label, as it is not in a row of its
    own (the loss would predict it from the conversation before)."""
    out = []
    for row in pack([len(e.ids) for e in examples], capacity):
        parts = [examples[i] for i in row]
        labels = [np.concatenate([[IGNORE], p.labels[1:]]) for p in parts]
        out.append({"input_ids": np.concatenate([p.ids for p in parts]), "labels": np.concatenate(labels),
                    "position_ids": np.concatenate([np.arange(len(p.ids)) for p in parts])})
    return out


@dataclass
class ChatRows(Dataset):
    """Training or evaluation rows; an evaluation split also keeps each conversation's prompt (the
    turns before its last reply, rendered with the generation prompt) and that reply."""

    items: list[dict]
    prompts: list[str] = field(default_factory=list)
    references: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def collate(items: list[dict], pad_id: int) -> dict:
    """A batch; packed rows get position ids (the padding is one more sequence of its own), single
    conversations an attention mask. No cache: with one the packed rows would not be told apart."""
    lengths = [len(item["input_ids"]) for item in items]
    width = max(lengths)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    for row, item in enumerate(items):
        ids[row, :lengths[row]] = torch.as_tensor(item["input_ids"])
        labels[row, :lengths[row]] = torch.as_tensor(item["labels"])
    batch = {"input_ids": ids, "labels": labels, "use_cache": False}
    if "position_ids" in items[0]:
        positions = torch.zeros((len(items), width), dtype=torch.long)
        for row, item in enumerate(items):
            positions[row, :lengths[row]] = torch.as_tensor(item["position_ids"])
            positions[row, lengths[row]:] = torch.arange(width - lengths[row])
        batch["position_ids"] = positions
    else:
        batch["attention_mask"] = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return batch


@torch.no_grad()
def packs_safely(model, tolerance: float = 1e-4) -> bool:
    """Whether the model reads a packed row as separate conversations: the logits of two short
    random sequences packed in one row equal their logits alone."""
    training = model.training
    model.eval()
    try:
        generator = torch.Generator().manual_seed(0)
        vocab = model.get_input_embeddings().num_embeddings
        device = next(model.parameters()).device
        parts = [torch.randint(0, vocab, (n,), generator=generator).to(device) for n in (5, 7)]
        alone = torch.cat([model(input_ids=p[None], use_cache=False).logits[0] for p in parts])
        positions = torch.cat([torch.arange(len(p), device=device) for p in parts])[None]
        packed = model(input_ids=torch.cat(parts)[None], position_ids=positions, use_cache=False).logits[0]
        scale = float(alone.abs().max()) or 1.0
        return bool((packed - alone).abs().max() <= tolerance * max(scale, 1.0))
    except (TypeError, ValueError, RuntimeError):  # a model whose forward takes no position ids
        return False
    finally:
        model.train(training)
