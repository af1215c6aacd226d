"""Text from a causal-lm run: sampling with temperature / top-k / top-p, streamed as it comes.

`generate(run_dir, prompt, ...)` yields pieces of text; the CLI prints them and the HTTP server
can send them as events. Sampling goes through `model.generate`. A model only knows its trained
number of positions (nanoGPT's 64 for the Shakespeare recipe), so a longer text is written in
steps, each starting again from the last positions' worth of context: the sliding window nanoGPT's
sampler uses, moved a few tokens at a time.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

from danlu.errors import DanluError
from danlu.run import Run
from danlu.tasks.base import Task

# Where a line of verse ends: line breaks and Chinese or Western sentence punctuation.
LINE_BREAKS = re.compile(r"[\n，。！？；：、,.!?;:]")
_LOCK = threading.Lock()  # the seed is global to torch: one seeded generation at a time


def generate(run_dir: str | Path, prompt: str = "", max_new_tokens: int = 200, temperature: float = 0.8,
             top_k: int | None = 50, top_p: float | None = 0.95, seed: int | None = 0,
             stream: bool = True) -> Iterator[str]:
    """The continuation of `prompt` (not the prompt itself), in pieces as they are sampled
    (stream=True) or as one string. An empty prompt starts a new document."""
    tokenizer, model = load_model(str(_model_dir(run_dir)))
    options = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    if not stream:
        yield tokenizer.decode(sample_ids(model, tokenizer, prompt, **options), skip_special_tokens=True)
        return
    streamer = _Pieces(tokenizer)
    failure: list[BaseException] = []

    def work():
        try:
            sample_ids(model, tokenizer, prompt, streamer=streamer, **options)
        except BaseException as exc:  # handed to the reader, which raises it in its own thread
            failure.append(exc)
        finally:
            streamer.finish()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    yield from (piece for piece in streamer if piece)
    thread.join()
    if failure:
        raise failure[0]


@functools.lru_cache(maxsize=4)
def load_model(model_dir: str):
    """(tokenizer, model) of a saved causal LM, loaded once per process."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return tokenizer, model.eval()


def _model_dir(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    if (path / "config.json").exists() and not (path / "model").exists():
        model_dir = path  # a model folder, a run's or any Hugging Face causal LM
    else:
        model_dir = Run(path).require_model()
    meta = model_dir / "danlu.json"
    task = Task.read_meta(model_dir).get("task") if meta.exists() else "causal-lm"
    if task != "causal-lm":
        raise DanluError(f"{run_dir} is a {task} run; generate needs a causal-lm run")
    return model_dir


@torch.no_grad()
def sample_ids(model, tokenizer, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8,
               top_k: int | None = 50, top_p: float | None = 0.95, seed: int | None = 0,
               streamer=None) -> list[int]:
    """The ids sampled after `prompt`; stops at the end-of-text token or after max_new_tokens."""
    eos = tokenizer.eos_token_id
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    ids = ids or [eos if eos is not None else tokenizer.bos_token_id]
    limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    limit = limit or len(ids) + max_new_tokens
    keep = max(1, limit - max(1, limit // 8))  # context kept when the window slides
    sampling = dict(do_sample=True, temperature=temperature, top_k=top_k or 0, top_p=top_p or 1.0) \
        if temperature > 0 else dict(do_sample=False)
    new: list[int] = []
    with _LOCK:
        if seed is not None:
            torch.manual_seed(seed)
        while len(new) < max_new_tokens:
            context = (ids + new)[-keep:] if len(ids) + len(new) >= limit else ids + new
            steps = min(max_new_tokens - len(new), limit - len(context))
            inputs = torch.tensor([context], device=model.device)
            out = model.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=steps,
                                 pad_token_id=eos, eos_token_id=eos, streamer=streamer, **sampling)
            got = out[0, len(context):].tolist()
            if eos in got:
                new += got[:got.index(eos)]
                break
            new += got
    return new


class _Pieces(TextIteratorStreamer):
    """TextIteratorStreamer across several generate calls: each call ends its stream; only
    `finish` ends ours, so a character cut between two calls still decodes whole."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)

    def end(self):
        self.next_tokens_are_prompt = True  # the next call starts by echoing its context: skip it

    def finish(self):
        super().end()


# -- samples for the run report ---------------------------------------------------


def report_samples(model, tokenizer, cfg, train_texts: Iterable[str]) -> tuple[list[dict], dict | None]:
    """`cfg.samples` samples per prompt (recipe `generate:`), and the line-structure figures when asked."""
    samples = []
    for p, prompt in enumerate(cfg.prompts):
        for i in range(cfg.samples):
            ids = sample_ids(model, tokenizer, prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p,
                             seed=cfg.seed + 1000 * p + i)
            samples.append({"prompt": prompt, "text": tokenizer.decode(ids, skip_special_tokens=True),
                            "finished": len(ids) < cfg.max_new_tokens})
    if not cfg.line_structure:
        return samples, None
    dominant, corpus_share = dominant_lengths(train_texts)
    lines = [n for s in samples for n in line_lengths(s["prompt"] + s["text"], complete=s["finished"])]
    matching = sum(n in dominant for n in lines)
    return samples, {"lines": len(lines), "line_structure": matching / len(lines) if lines else 0.0,
                     "corpus_line_structure": corpus_share, "dominant_lengths": sorted(dominant)}


def line_lengths(text: str, complete: bool = True) -> list[int]:
    """Characters per line, lines cut at line breaks and punctuation; a text cut off by the
    token budget leaves its last, unfinished line out."""
    parts = LINE_BREAKS.split(text)
    if not complete and parts:
        parts = parts[:-1]
    return [len(p.strip()) for p in parts if p.strip()]


def dominant_lengths(texts: Iterable[str], cover: float = 0.9) -> tuple[set[int], float]:
    """The most common line lengths that together make up `cover` of the corpus's lines
    (Tang verse: 5 and 7 characters), and the share of lines they actually cover."""
    counts = Counter(n for text in texts for n in line_lengths(str(text)))
    total = sum(counts.values())
    chosen: set[int] = set()
    covered = 0
    for length, count in counts.most_common():
        if total and covered / total >= cover:
            break
        chosen.add(length)
        covered += count
    return chosen, covered / total if total else 0.0
