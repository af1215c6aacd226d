"""Tag schemes and entity-level scores: IOB1 -> BIO, invalid sequences, spans, seqeval metrics.

BIO (IOB2): every entity starts with B-X, continues with I-X. IOB1 (the original CoNLL-2003 files):
an entity starts with I-X, and B-X appears only where an entity of type X directly follows another of
the same type. The task trains and predicts BIO; a file in IOB1 is converted when it is read.

Entity scores follow conlleval (seqeval's default mode): an I-X that does not continue an X starts
an entity, so a model's invalid sequences are scored as conlleval would score them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

OUTSIDE = "O"
SCHEMES = ("bio", "iob1")


def split_tag(tag: str) -> tuple[str, str | None]:
    """("B" | "I" | "O", entity type or None); a tag of another shape is a ValueError."""
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, sep, kind = tag.partition("-")
    if sep and prefix in ("B", "I") and kind:
        return prefix, kind
    raise ValueError(f"'{tag}' is not a tag of the form O, B-TYPE or I-TYPE")


def entity_type(tag: str) -> str | None:
    return None if tag == OUTSIDE else tag[2:]


@dataclass(frozen=True)
class Invalid:
    """A tag the scheme does not allow where it stands: its position in the sentence and why."""

    position: int
    why: str


def invalid_tags(tags: list[str], scheme: str) -> list[Invalid]:
    """BIO: an I-X must follow B-X or I-X. IOB1: a B-X must follow an X (it only separates two
    adjacent entities of one type)."""
    out, previous = [], None
    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        continues = previous == kind and kind is not None
        if scheme == "bio" and prefix == "I" and not continues:
            out.append(Invalid(i, f"{tag} after {tags[i - 1] if i else 'the sentence start'} (in BIO an entity "
                                  f"starts with B-{kind})"))
        elif scheme == "iob1" and prefix == "B" and not continues:
            out.append(Invalid(i, f"{tag} after {tags[i - 1] if i else 'the sentence start'} (in IOB1 B- only "
                                  f"separates two adjacent {kind} entities)"))
        previous = kind
    return out


def to_bio(tags: list[str]) -> list[str]:
    """The same entities in BIO, from IOB1 or from BIO with invalid tags: an I-X that does not continue
    an X starts an entity (B-X), which is how IOB1 means it and how conlleval reads it in BIO."""
    out, previous = [], None
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == "I" and previous != kind:
            tag = f"B-{kind}"
        out.append(tag)
        previous = kind
    return out


@dataclass(frozen=True)
class Span:
    kind: str
    start: int  # first word
    end: int  # one past the last word


def spans(tags: list[str]) -> list[Span]:
    """The entities of a tag sequence (read as conlleval does: an I-X after a non-X starts one)."""
    out, start, kind = [], None, None
    for i, tag in enumerate([*tags, OUTSIDE]):
        prefix, this = split_tag(tag)
        if kind is not None and (prefix != "I" or this != kind):
            out.append(Span(kind, start, i))
            kind = None
        if prefix == "B" or (prefix == "I" and kind is None):
            start, kind = i, this
    return out


def label_set(tag_lists) -> list[str]:
    """O, then B- and I- of every entity type seen, by type: both prefixes even where one is unseen."""
    kinds = sorted({entity_type(t) for tags in tag_lists for t in tags} - {None})
    return [OUTSIDE] + [f"{prefix}-{kind}" for kind in kinds for prefix in ("B", "I")]


def entity_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """Entity-level micro precision / recall / F1 (seqeval, conlleval mode), per type with its support,
    the macro F1 over types, and the share of words whose tag is right."""
    from seqeval.metrics import classification_report

    if len(gold) != len(predicted) or any(len(g) != len(p) for g, p in zip(gold, predicted)):
        raise ValueError("gold and predicted tag sequences differ in length")
    with warnings.catch_warnings():  # no entity at all leaves the averages 0/0, reported as 0 below
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    per_type = {kind: {"precision": float(r["precision"]), "recall": float(r["recall"]),
                       "f1": float(r["f1-score"]), "support": int(r["support"])}
                for kind, r in report.items() if not kind.endswith(" avg")}
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    words = sum(len(g) for g in gold)
    right = sum(a == b for g, p in zip(gold, predicted) for a, b in zip(g, p))
    return {"f1": float(micro["f1-score"]), "precision": float(micro["precision"]),
            "recall": float(micro["recall"]),
            "f1_macro": float(report["macro avg"]["f1-score"]) if per_type else 0.0,
            "token_accuracy": right / words if words else 0.0, "per_type": per_type, "n": len(gold)}
