"""Text from a causal language model: sampling with temperature / top-k / top-p, streamed as it comes.

`TextStream` yields pieces of text for a loaded model, with stop strings and what a server reports
(token counts, why it ended): `danlu generate` prints it, danlu.serve.openai_routes sends it as events. Sampling goes through
`model.generate`. A model only knows its trained number of positions (nanoGPT's 64 for the
Shakespeare recipe), so a longer text is written in steps, each starting again from the last
positions' worth of context: the sliding window nanoGPT's sampler uses, moved a few tokens at a time.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Callable, Iterable, Iterator, Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

# Where a line of verse ends: line breaks and Chinese or Western sentence punctuation.
LINE_BREAKS = re.compile(r"[\n，。！？；：、,.!?;:]")
_LOCK = threading.Lock()  # the seed is global to torch: one seeded generation at a time


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The ids of `prompt` as sampling reads it (no special tokens added); their count is a server's prompt_tokens."""
    return tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []


@torch.no_grad()
def sample_ids(model, tokenizer, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8,
               top_k: int | None = 50, top_p: float | None = 0.95, seed: int | None = 0,
               streamer=None, until: Callable[[], bool] | None = None) -> list[int]:
    """The ids sampled after `prompt`; stops at the end-of-text token, after max_new_tokens, or
    at the first token after `until()` turns true."""
    eos = tokenizer.eos_token_id
    sampling = dict(do_sample=True, temperature=temperature, top_k=top_k or 0, top_p=top_p or 1.0) \
        if temperature > 0 else dict(do_sample=False)
    stopping = StoppingCriteriaList([_Until(until)]) if until else None
    new: list[int] = []
    with _LOCK:
        # Tokenized under the lock too: the streamer decodes with the same tokenizer, and fast
        # tokenizers are not safe to share between threads.
        ids = prompt_ids(tokenizer, prompt) or [eos if eos is not None else tokenizer.bos_token_id]
        limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
        limit = limit or len(ids) + max_new_tokens
        keep = max(1, limit - max(1, limit // 8))  # context kept when the window slides
        if seed is not None:
            torch.manual_seed(seed)
        while len(new) < max_new_tokens and not (until and until()):
            context = (ids + new)[-keep:] if len(ids) + len(new) >= limit else ids + new
            steps = min(max_new_tokens - len(new), limit - len(context))
            inputs = torch.tensor([context], device=model.device)
            out = model.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=steps,
                                 pad_token_id=eos, eos_token_id=eos, streamer=streamer,
                                 stopping_criteria=stopping, **sampling)
            got = out[0, len(context):].tolist()
            if eos in got:
                new += got[:got.index(eos)]
                break
            new += got
    return new


class TextStream:
    """`sample_ids` in a thread of its own, read as text: `for piece in TextStream(model, tokenizer, prompt)`.

    The text ends before the first of the `stop` strings; sampling ends there too (a word or a
    token later: the streamer sees text a word at a time). `cancel()` (a reader gone away) ends
    sampling at the next token. Once read: `prompt_tokens`, `ids` (the tokens sampled) and
    `finish_reason`, "stop" (end-of-text or a stop string) or "length" (max_new_tokens reached).
    """

    def __init__(self, model, tokenizer, prompt: str = "", max_new_tokens: int = 200, stop: Sequence[str] = (),
                 **sampling):
        self.model, self.tokenizer, self.prompt, self.max_new_tokens = model, tokenizer, prompt, max_new_tokens
        self.sampling = sampling  # temperature, top_k, top_p, seed: as sample_ids takes them
        self.pieces = _Pieces(tokenizer, stop)
        self.cancelled = False
        self.prompt_tokens, self.ids = 0, []

    def cancel(self) -> None:
        self.cancelled = True

    @property
    def finish_reason(self) -> str:
        return "length" if len(self.ids) >= self.max_new_tokens and not self.pieces.stopped else "stop"

    def __iter__(self) -> Iterator[str]:
        failure: list[BaseException] = []
        thread = threading.Thread(target=self._work, args=(failure,), daemon=True)
        thread.start()
        try:
            yield from (piece for piece in self.pieces if piece)
        finally:
            self.cancel()  # a reader that stopped early must not leave the model sampling for nobody
        thread.join()
        if failure:
            raise failure[0]

    def _work(self, failure: list) -> None:
        try:
            with _LOCK:
                self.prompt_tokens = len(prompt_ids(self.tokenizer, self.prompt))
            self.ids = sample_ids(self.model, self.tokenizer, self.prompt, self.max_new_tokens, streamer=self.pieces,
                                  until=lambda: self.cancelled or self.pieces.stopped, **self.sampling)
        except BaseException as exc:  # handed to the reader, which raises it in its own thread
            failure.append(exc)
        finally:
            self.pieces.finish()


class _Until(StoppingCriteria):
    def __init__(self, done: Callable[[], bool]):
        self.done = done

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), bool(self.done()), dtype=torch.bool, device=input_ids.device)


class _Pieces(TextIteratorStreamer):
    """TextIteratorStreamer across several generate calls: each call ends its stream; only
    `finish` ends ours, so a character cut between two calls still decodes whole.

    Text from the first of `stops` on is dropped and `stopped` set; the end of the text that could
    still grow into a stop string is held back until it does or cannot."""

    def __init__(self, tokenizer, stops: Sequence[str] = ()):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.stops = [s for s in stops if s]
        self.held, self.stopped = "", False

    def on_finalized_text(self, text: str, stream_end: bool = False):
        if not self.stopped:
            text, self.held = self.held + text, ""
            cut = min((i for i in map(text.find, self.stops) if i >= 0), default=None)
            if cut is not None:
                text, self.stopped = text[:cut], True
            elif not stream_end:
                hold = max((n for s in self.stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
                text, self.held = text[:len(text) - hold], text[len(text) - hold:]
            if text:
                self.text_queue.put(text)
        if stream_end:
            self.text_queue.put(self.stop_signal)

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
