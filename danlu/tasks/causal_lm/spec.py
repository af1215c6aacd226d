"""The causal-lm task as the registry knows it, with its own recipe section `generate:`."""

from pydantic import Field

from danlu.evaluate.names import LANGUAGE_MODEL
from danlu.recipe.sections import Section, TokenizerConfig
from danlu.registry import Capabilities, TaskSpec


class GenerateConfig(Section):
    """The samples written into the report after training, and what `danlu predict` and /v1/predict
    write for a prompt."""

    prompts: list[str] = Field(default=[""], max_length=100)  # "" starts a new document (after end-of-text)
    samples: int = Field(default=2, ge=0, le=100)  # per prompt
    max_new_tokens: int = Field(default=200, ge=1, le=100_000)
    temperature: float = Field(default=0.8, gt=0, le=100)
    top_k: int | None = Field(default=50, ge=1, le=10_000_000)
    top_p: float | None = Field(default=0.95, gt=0, le=1)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    # Share of generated lines (split on newlines and punctuation) whose length in characters is one
    # of the training text's dominant line lengths (verse: 5 or 7 characters per half-line).
    line_structure: bool = False


def _defaults(recipe) -> None:
    # What a language model needs differs from the classifiers' defaults; a value the recipe gives
    # itself always wins (model_fields_set holds only the keys written in the recipe).
    if "kind" not in recipe.tokenizer.model_fields_set:
        recipe.tokenizer.kind = "byte_bpe"
    if "lowercase" not in recipe.tokenizer.model_fields_set:
        recipe.tokenizer.lowercase = False
    if "txt" not in recipe.data.model_fields_set:
        recipe.data.txt = "file"
    if "activation" not in recipe.model.model_fields_set:
        recipe.model.activation = "gelu"


def _arch(recipe):
    if recipe.model.arch not in (None, "gpt"):
        return ("model.arch", f"causal-lm builds 'gpt' decoders, not '{recipe.model.arch}'")
    return None


SPEC = TaskSpec(
    name="causal-lm",
    kind="language-model",
    task_class="danlu.tasks.causal_lm.task:CausalLM",
    roles=("text",),
    input_roles=("text",),
    main_metric="loss",
    greater_is_better=False,
    metrics=LANGUAGE_MODEL,
    summary="a corpus -> a model that continues text (character or BPE GPT); also serves OpenAI's API",
    starter="danlu.tasks.causal_lm:starter.yaml",
    sections={"tokenizer": TokenizerConfig, "generate": GenerateConfig},
    defaults=_defaults,
    checks=(_arch,),
    sample="danlu.tasks.causal_lm.sample:sample",
    unused=lambda recipe: ("tokenizer",) if recipe.model.from_ else (),
    capabilities=Capabilities(pretrain=("clm",), transformer_layers=True, generate=True),
)
SPECS = (SPEC,)
