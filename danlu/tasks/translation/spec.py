"""The translation task as the registry knows it, with its own recipe section `translation:`.

Light on purpose (pydantic only): the recipe is validated with it before pandas or torch load.
"""

from __future__ import annotations

from pydantic import Field

from danlu.recipe.sections import Section, TokenizerConfig
from danlu.registry import Capabilities, TaskSpec

METRICS = ("bleu", "chrf", "loss")
# The tokenizers whose decoding gives back the exact text (spaces and punctuation as written): BLEU on
# detokenized output counts "Mann ." for "Mann." as a mistake, and WordPiece / BPE split punctuation off.
TOKENIZERS = ("byte_bpe", "char")
# A language code as sacreBLEU and the NMT literature write it: en, de, zh, pt-BR, zh_Hant.
LANGUAGE = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"


class TranslationConfig(Section):
    """The two languages, how a translation is decoded, and what the quality gate calls an extreme pair."""

    source_language: str = Field(default="en", pattern=LANGUAGE)
    target_language: str = Field(default="de", pattern=LANGUAGE)
    beams: int = Field(default=5, ge=1, le=64)  # 1: greedy decoding
    # A finished hypothesis scores its log-probability divided by length ** length_penalty: above 0
    # favours longer translations, below 0 shorter ones.
    length_penalty: float = Field(default=1.0, ge=-10, le=10)
    max_new_tokens: int | None = Field(default=None, ge=1, le=100_000)  # default: model.max_length
    label_smoothing: float = Field(default=0.1, ge=0, lt=1)
    decoder_layers: int | None = Field(default=None, ge=1, le=1000)  # default: model.layers (from scratch)
    # Also decode every evaluated split greedily, reporting its BLEU, chrF and time beside the beam's.
    compare_greedy: bool = False
    samples: int = Field(default=8, ge=0, le=1000)  # test translations shown in the report
    # A pair whose target/source length ratio lies beyond this factor of the training median (either
    # way) is extreme: listed by the gate with its line and left out of training.
    max_length_ratio: float = Field(default=3.0, gt=1, le=1_000_000)
    max_extreme_share: float = Field(default=0.01, ge=0, le=1)  # of a split, before the gate fails


def _defaults(recipe) -> None:
    # A value the recipe gives itself always wins (model_fields_set holds the keys it wrote).
    if "kind" not in recipe.tokenizer.model_fields_set:
        recipe.tokenizer.kind = "byte_bpe"
    if "lowercase" not in recipe.tokenizer.model_fields_set:
        recipe.tokenizer.lowercase = False  # BLEU is cased: a lowercased model loses every capital
    # A file of sentences to translate (`danlu predict RUN sentences.txt`) reads as a `text` column.
    recipe.data.columns.setdefault("source", ["source", "text"])


def _arch(recipe):
    if recipe.model.arch is not None:
        return ("model.arch", "translation builds its own encoder-decoder Transformer (model.size, model.layers, "
                              "translation.decoder_layers) or loads model.from; remove model.arch")
    return None


def _tokenizer(recipe):
    if not recipe.model.from_ and recipe.tokenizer.kind not in TOKENIZERS:
        return ("tokenizer.kind", f"translation trains {' or '.join(TOKENIZERS)} tokenizers, whose decoding gives "
                                  f"back the text exactly (BLEU is measured on it); not {recipe.tokenizer.kind}")
    return None


def _early_stopping(recipe):
    early = recipe.train.early_stopping
    if early is not None and (early.metric or recipe.main_metric).removeprefix("eval_") != "loss":
        return ("train.early_stopping.metric", "the evaluations during training measure the validation loss only "
                                               "(translating the split each time would cost more than the training "
                                               "between them): set it to loss")
    return None


def _data_keys(recipe):
    # Keys of the generic data stage that mean nothing for pairs of sentences.
    data, found = recipe.data, []
    for key in data.not_default(("features", "categorical", "split_column", "hub")):
        found.append((f"data.{key}", "translation reads pairs of sentences (two aligned line files, or a "
                                     "tsv/csv/jsonl/parquet table with source and target columns); remove it"))
    if data.format in ("imagefolder", "image_csv", "idx", "builtin", "hub"):
        found.append(("data.format", f"translation reads line files or tables of sentence pairs, not {data.format}"))
    return found


SPEC = TaskSpec(
    name="translation",
    kind="translation",
    task_class="danlu.tasks.translation.task:Translation",
    roles=("source", "target"),
    input_roles=("source",),
    main_metric="bleu",
    greater_is_better=True,
    metrics=METRICS,
    summary="a sentence -> the same sentence in another language (encoder-decoder Transformer, BLEU and chrF)",
    starter="danlu.tasks.translation:starter.yaml",
    sample="danlu.tasks.translation.sample:sample",
    data_stage="danlu.tasks.translation.data:load",
    sections={"tokenizer": TokenizerConfig, "translation": TranslationConfig},
    defaults=_defaults,
    unused=lambda recipe: ("tokenizer",) if recipe.model.from_ else (),
    checks=(_arch, _tokenizer, _early_stopping, _data_keys),
    capabilities=Capabilities(pretrain=("denoise",)),
)
SPECS = (SPEC,)
