"""The chat task as the registry knows it, with its own recipe section `chat:`.

Light on purpose (pydantic only): the recipe is validated with it before pandas or torch load.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from danlu.recipe.sections import MAX_SEED, Section, TokenizerConfig
from danlu.registry import Capabilities, TaskSpec

METRICS = ("response_perplexity", "loss", "eos_rate")
TEMPLATES = ("auto", "default")
# Measured after training on generated replies, or the exponential of the loss: the Trainer's
# evaluation during training computes the reply tokens' loss only.
AFTER_TRAINING = ("response_perplexity", "eos_rate")


class ChatConfig(Section):
    """How conversations become training text, and how replies are written (evaluation, the report,
    `danlu predict` and POST /v1/predict; the OpenAI routes take their sampling from the request)."""

    # auto: the pretrained model's own chat template when its tokenizer has one, else default;
    # default: ChatML (<|im_start|>role\ncontent<|im_end|>); or a Jinja chat template of your own.
    template: str = Field(default="auto", min_length=1, max_length=100_000)
    # The token that closes an assistant turn, where generation stops; by default the special token
    # the template writes right after a reply (<|im_end|> for ChatML).
    end_of_turn: str | None = Field(default=None, min_length=1, max_length=200)
    loss: Literal["assistant", "all"] = "assistant"  # assistant: the loss counts reply tokens only
    # Short training conversations share a row, each with positions of its own, so that no token
    # attends to another conversation; on only where the model is checked to keep them apart.
    packing: bool = True
    max_new_tokens: int = Field(default=256, ge=1, le=100_000)
    temperature: float = Field(default=0.7, ge=0, le=100)  # 0: greedy
    top_k: int | None = Field(default=50, ge=1, le=10_000_000)
    top_p: float | None = Field(default=0.95, gt=0, le=1)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    eval_replies: int = Field(default=100, ge=0, le=1_000_000)  # held-out replies generated per split (eos_rate)
    examples: int = Field(default=4, ge=0, le=100)  # held-out prompts with their generated replies in the report

    @field_validator("template")
    @classmethod
    def _jinja(cls, value: str) -> str:
        if value in TEMPLATES:
            return value
        if "{{" not in value and "{%" not in value:
            raise ValueError(f"{value[:40]!r} is neither {' nor '.join(TEMPLATES)} nor a Jinja chat template")
        from jinja2 import TemplateSyntaxError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        try:
            ImmutableSandboxedEnvironment().parse(value)
        except TemplateSyntaxError as exc:
            raise ValueError(f"the Jinja template does not parse: {exc.message} (line {exc.lineno})") from None
        except (RecursionError, MemoryError):  # nesting no parser can follow: refused like a syntax error
            raise ValueError("the Jinja template is nested too deeply to parse") from None
        return value


def _defaults(recipe) -> None:
    # As causal-lm's (a value the recipe gives itself always wins): text is written back exactly.
    if "kind" not in recipe.tokenizer.model_fields_set:
        recipe.tokenizer.kind = "byte_bpe"
    if "lowercase" not in recipe.tokenizer.model_fields_set:
        recipe.tokenizer.lowercase = False
    if "activation" not in recipe.model.model_fields_set:
        recipe.model.activation = "gelu"
    early = recipe.train.early_stopping
    if early is not None and early.metric is None:
        early.metric = "loss"  # the reply tokens' loss: response_perplexity is its exponential


def _arch(recipe):
    if recipe.model.arch not in (None, "gpt"):
        return ("model.arch", f"chat builds 'gpt' decoders (or loads model.from), not '{recipe.model.arch}'")
    return None


def _early_stopping(recipe):
    early = recipe.train.early_stopping
    if early is not None and early.metric and early.metric.removeprefix("eval_") in AFTER_TRAINING:
        return ("train.early_stopping.metric", f"{early.metric} is measured after training; stop early on loss "
                                               "(the reply tokens' loss, whose exponential is response_perplexity)")
    return None


def _own_template_names_its_end(recipe):
    # A tokenizer trained here gets the template's tokens; only ChatML's are known without being told.
    cfg = recipe.chat
    if cfg.template not in TEMPLATES and cfg.end_of_turn is None and not recipe.model.from_:
        return ("chat.end_of_turn", "a template of your own on a tokenizer trained here needs its end-of-turn "
                                    "token named, so the tokenizer holds it (e.g. end_of_turn: '<|im_end|>')")
    return None


def _data_keys(recipe):
    data, found = recipe.data, []
    for key in data.not_default(("features", "categorical", "split_column")):
        found.append((f"data.{key}", "chat reads conversations (messages, ShareGPT conversations or Alpaca "
                                     "instruction/input/output); remove it"))
    return found


SPEC = TaskSpec(
    name="chat",
    kind="chat",
    task_class="danlu.tasks.chat.task:Chat",
    roles=("text",),
    input_roles=("text",),  # `danlu predict RUN file`: a `text` column of user messages
    main_metric="response_perplexity",
    greater_is_better=False,
    metrics=METRICS,
    summary="conversations -> an assistant that replies (instruction tuning, chat templates); serves OpenAI's chat API",
    starter="danlu.tasks.chat:starter.yaml",
    sample="danlu.tasks.chat.sample:sample",
    data_stage="danlu.tasks.chat.data:load",
    sections={"tokenizer": TokenizerConfig, "chat": ChatConfig},
    defaults=_defaults,
    unused=lambda recipe: ("tokenizer",) if recipe.model.from_ else (),
    checks=(_arch, _early_stopping, _own_template_names_its_end, _data_keys),
    capabilities=Capabilities(pretrain=("clm",), transformer_layers=True, generate=True),
)
SPECS = (SPEC,)
