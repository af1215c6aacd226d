"""The token-classification task as the registry knows it, with its own recipe section `tagging:`.

Light on purpose (pydantic only): the recipe is validated with it before pandas or torch load.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from danlu.recipe.sections import MAX_COUNT, Section, TokenizerConfig
from danlu.registry import Capabilities, TaskSpec

METRICS = ("f1", "precision", "recall", "f1_macro", "token_accuracy", "loss")
FORMATS = ("auto", "jsonl")  # auto: jsonl by extension (.jsonl, .ndjson), every other file CoNLL columns


class TaggingConfig(Section):
    """How the files are tagged and how a raw text is cut into the units the model tags."""

    # The scheme of the files' tags: bio (IOB2) or iob1 (the original CoNLL-2003 files); the model
    # trains and predicts BIO either way.
    scheme: Literal["bio", "iob1"] = "bio"
    # Tags the scheme does not allow where they stand (I-X after O in BIO) that the gate accepts; each
    # is reported with its file and line, and read as conlleval reads it (as the start of an entity).
    max_invalid: int = Field(default=0, ge=0, le=MAX_COUNT)
    # How predict and serve cut a text: words (whitespace, punctuation split off), chars (every
    # character but spaces: Chinese); auto: chars when the training tokens are single characters.
    input: Literal["auto", "words", "chars"] = "auto"
    examples: int = Field(default=6, ge=0, le=100)  # test sentences shown in the report, true vs predicted
    # Share of training words whose sub-tokens are read as the unknown token, drawn anew for every batch:
    # the model learns to tag a word it never saw from its context and its shape (Lample et al. 2016).
    word_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


def _defaults(recipe) -> None:
    # Case is most of what tells a name from a word: a tokenizer trained here keeps it unless told not to.
    if "lowercase" not in recipe.tokenizer.model_fields_set:
        recipe.tokenizer.lowercase = False
    if recipe.model.arch is None and not recipe.model.from_:
        recipe.model.arch = "bert"


def _arch(recipe):
    if recipe.model.arch not in (None, "bert", "lstm"):
        return ("model.arch", f"token classification builds 'bert' encoders or 'lstm' taggers (or loads "
                              f"model.from), not '{recipe.model.arch}'")
    return None


def _data_keys(recipe):
    # Keys of the generic data stage that mean nothing for sentences of tagged tokens.
    data, found = recipe.data, []
    for key in data.not_default(("features", "categorical", "split_column", "hub")):
        found.append((f"data.{key}", "token classification reads sentences of tagged tokens (CoNLL columns or "
                                     "jsonl with tokens and tags); remove it"))
    if data.format not in FORMATS:
        found.append(("data.format", f"token classification reads CoNLL column files (format auto) or jsonl, "
                                     f"not {data.format}"))
    return found


SPEC = TaskSpec(
    name="token-classification",
    kind="token-classification",
    task_class="danlu.tasks.token_classification.task:TokenClassification",
    roles=("text", "label"),
    input_roles=("text",),
    main_metric="f1",
    greater_is_better=True,
    metrics=METRICS,
    summary="a sentence -> a tag per word: named entities (PER, LOC, ...) with their character offsets",
    starter="danlu.tasks.token_classification:starter.yaml",
    sample="danlu.tasks.token_classification.sample:sample",
    data_stage="danlu.tasks.token_classification.data:load",
    sections={"tokenizer": TokenizerConfig, "tagging": TaggingConfig},
    defaults=_defaults,
    unused=lambda recipe: ("tokenizer",) if recipe.model.from_ else (),
    checks=(_arch, _data_keys),
    capabilities=Capabilities(),
)
SPECS = (SPEC,)
