"""The task registry: every stage asks it what a task is and can do, instead of branching on its name.

A task declares a `TaskSpec` in its own folder (`danlu/tasks/<task>/spec.py`): its name and kind,
the data roles it reads, its own recipe sections, its main metric, its capabilities and where its
`Task` class lives. Specs are light (pydantic only, no torch), so the CLI and recipe validation
can read them without loading a model stack; the class is imported when a task is built.

Built-in tasks are listed below by module name. Any other module can call `register(spec)`, or be
named in the environment variable DANLU_TASK_MODULES (comma-separated), which is read once, when the
registry is first asked. A run directory only ever stores a task's name: loading a run looks the
name up here and never imports code named by the run itself.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from danlu.errors import DanluError

BUILTIN_SPEC_MODULES = (
    "danlu.tasks.text_classification.spec",
    "danlu.tasks.image_classification.spec",
    "danlu.tasks.tabular.spec",
    "danlu.tasks.causal_lm.spec",
    "danlu.tasks.forecasting.spec",
    "danlu.tasks.token_classification.spec",
    "danlu.tasks.chat.spec",
    "danlu.tasks.translation.spec",
    "danlu.tasks.audio.spec",
    "danlu.tasks.object_detection.spec",
    "danlu.tasks.image_segmentation.spec",
    "danlu.tasks.video_classification.spec",
    "danlu.tasks.image_generation.spec",
)
ENV_MODULES = "DANLU_TASK_MODULES"

# A cross-field rule: gets the validated recipe, returns None or (key path, what is wrong and how to fix it).
Check = Callable[[Any], "tuple[str, str] | None"]


@dataclass(frozen=True)
class Capabilities:
    """What a task's runs can do beyond train / evaluate / predict; stages ask these before working."""

    cross_validation: bool = False
    class_balance: bool = False  # train.imbalance: class weights, oversampling
    pretrain: tuple[str, ...] = ()  # self-supervised objectives (recipe `pretrain.objective`)
    joint: bool = False  # the joint MLM + task objective
    transformer_layers: bool = False  # transfer.lora and gradual unfreezing need transformer blocks
    distill: bool = False  # learns from a teacher run's soft labels (`distill:`)
    student: bool = False  # `danlu compress` can train a distilled student variant
    compress: tuple[str, ...] = ()  # variant formats: onnx-fp32, onnx-int8, torch-int8, prune
    export: tuple[str, ...] = ("safetensors",)  # `danlu export --format`
    generate: bool = False  # writes text: `danlu generate`, OpenAI-compatible routes
    # Draws images (the task's generate_images and image_grid): `danlu generate RUN --n`, POST /v1/generate.
    generate_images: bool = False
    # The batch key that robustness attacks and Integrated Gradients take gradients through: a continuous
    # input ("pixel_values", "inputs"), or "inputs_embeds": token ids, through the model's input embeddings
    # (a Hugging Face model's get_input_embeddings); None: the task's outputs have no such input.
    gradient_input: str | None = None
    private: bool = False  # `privacy:` trains its models with DP-SGD (danlu.trust.privacy, Opacus)


@dataclass(frozen=True, eq=False)  # compared by identity: a spec holds classes and functions
class TaskSpec:
    name: str
    kind: str  # classification | regression | language-model | ...
    task_class: str  # "package.module:ClassName", imported when a task is built
    roles: tuple[str, ...]  # the columns the data stage maps (text, image, label ...)
    input_roles: tuple[str, ...]  # what a prediction needs (roles without the label)
    main_metric: str
    greater_is_better: bool
    metrics: tuple[str, ...]  # every scalar metric evaluate reports: evaluate.metric must be one of them
    summary: str  # one line for `danlu init --help`
    starter: str | None = None  # "package:file.yaml", a commented starter recipe
    # "module:function" -> danlu.tasks.base.Sample: a few synthetic rows and the recipe settings of a
    # model small enough to train on them in seconds; the contract test runs every task on its own.
    sample: str | None = None
    # "module:function" (recipe) -> (danlu.data.Splits, danlu.data.QualityReport): a task whose data is
    # read, split and checked differently from rows of examples (a time series split by time, with its own
    # gate rules) brings its own data stage; None: the generic one (danlu.data.load_splits + check_quality).
    data_stage: str | None = None
    sections: dict[str, type] = field(default_factory=dict)  # recipe key -> the task's own pydantic section
    defaults: Callable[[Any], None] | None = None  # task defaults for keys the recipe does not set
    # The task's sections a recipe leaves unused (a pretrained model's own tokenizer makes `tokenizer:`
    # moot): left out of the resolved recipe a run records, so it shows what was used.
    unused: Callable[[Any], tuple[str, ...]] | None = None
    checks: tuple[Check, ...] = ()
    capabilities: Capabilities = Capabilities()

    @property
    def has_classes(self) -> bool:
        # A generator's label column holds classes too (the class-conditional GAN's): split and gated as such.
        return self.kind in ("classification", "generation")

    def higher_is_better(self, metric: str) -> bool:
        """The direction of any metric this task reports; split prefixes (`eval_loss`) are ignored."""
        name = metric.lower()
        for prefix in ("eval_", "validation_", "test_", "train_"):
            name = name.removeprefix(prefix)
        if name == self.main_metric:
            return self.greater_is_better
        return name not in LOWER_IS_BETTER

    def task_type(self) -> type:
        return _load(self.task_class)

    def load_data(self, recipe):
        """(splits, quality report) through the task's own data stage (`data_stage`)."""
        return _load(self.data_stage)(recipe)

    def make_sample(self, rows: int = 60, seed: int = 0):
        if not self.sample:
            raise DanluError(f"task '{self.name}' provides no sample data")
        return _load(self.sample)(rows, seed)


def _load(where: str):
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)


# Metrics where a smaller value is better, whatever the task.
LOWER_IS_BETTER = frozenset({"loss", "mae", "mse", "rmse", "log_loss", "perplexity", "wer", "cer", "mase",
                             "mse_original", "mae_original", "smape", "cost"})

_SPECS: dict[str, TaskSpec] = {}
_loaded = False


def register(spec: TaskSpec, replace: bool = False) -> TaskSpec:
    """Add a task. Registering a name twice is an error unless `replace` (tests redefine toy tasks)."""
    _load_builtins()
    if spec.name in _SPECS and not replace and _SPECS[spec.name] != spec:
        raise DanluError(f"task '{spec.name}' is already registered")
    _SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _SPECS.pop(name, None)


def names() -> tuple[str, ...]:
    _load_builtins()
    return tuple(_SPECS)


def specs() -> tuple[TaskSpec, ...]:
    _load_builtins()
    return tuple(_SPECS.values())


def get(name: str) -> TaskSpec:
    _load_builtins()
    spec = _SPECS.get(name)
    if spec is None:
        close = difflib.get_close_matches(str(name), list(_SPECS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise DanluError(f"unknown task '{name}'{hint} Tasks: {', '.join(_SPECS)}")
    return spec


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True  # before importing: a spec module calls register(), which comes back here
    extra = [m.strip() for m in os.environ.get(ENV_MODULES, "").split(",") if m.strip()]
    for module in (*BUILTIN_SPEC_MODULES, *extra):
        found = importlib.import_module(module)
        for spec in getattr(found, "SPECS", ()):
            _SPECS.setdefault(spec.name, spec)
