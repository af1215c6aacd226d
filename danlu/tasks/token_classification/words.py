"""A raw text cut into the units the model tags, each with its character offsets in the text.

`words`: whitespace-separated words with leading and trailing punctuation split off as tokens of
their own, as CoNLL-style corpora write them ("Paris." -> "Paris" "."; "(Reuters)" -> "(" "Reuters"
")"); a final period stays when the word holds another one ("U.S.", "e.g."). `chars`: every character
that is not whitespace (Chinese, annotated one character per token).
"""

from __future__ import annotations

import re

LEADING = "\"'([{`"
TRAILING = "\"')]},;:!?"
_WORD = re.compile(r"\S+")

Piece = tuple[str, int, int]  # the token, its first character, one past its last


def cut(text: str, mode: str = "words") -> list[Piece]:
    if mode == "chars":
        return [(ch, i, i + 1) for i, ch in enumerate(text) if not ch.isspace()]
    out: list[Piece] = []
    for match in _WORD.finditer(text):
        start, end = match.start(), match.end()
        before, after = [], []
        while end - start > 1 and text[start] in LEADING:
            before.append((text[start], start, start + 1))
            start += 1
        while end - start > 1:
            last = text[end - 1]
            if last not in TRAILING and not (last == "." and "." not in text[start:end - 1]):
                break
            after.insert(0, (last, end - 1, end))
            end -= 1
        out += before + [(text[start:end], start, end)] + after
    return out


def locate(text: str, tokens: list[str]) -> list[Piece]:
    """Offsets of given tokens in the text they were joined into, found left to right; a token the
    text does not hold (changed by the one who joined them) takes the place where it was expected."""
    out, at = [], 0
    for token in tokens:
        found = text.find(token, at)
        start = found if found >= 0 else min(at, len(text))
        end = min(start + len(token), len(text))
        out.append((token, start, end))
        at = end
    return out
