"""The classic nets transformers lacks: an MLP, a small CNN and VGG-style CNNs, in plain PyTorch.

They save like every other danlu model, `save_pretrained(folder)` -> config.json + model.safetensors,
but they are plain nn.Modules, not transformers PreTrainedModels: loading transformers' model stack
costs ~3 s of imports, more than a small MLP's whole training. The model carries its own input
normalisation and, for regression, its target scale, so a saved model needs nothing beside it to give
the right numbers. Loading one without danlu: see the README ("The classic nets outside danlu").
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from danlu.models.vgg import probe_head, vgg_body

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
CONVOLUTIONAL = ("cnn", "vgg")  # the archs that read (B, C, H, W) images, not flat features


class ClassicConfig:
    """The shape of a classic net and what it reads and predicts; saved as config.json."""

    model_type = "danlu_classic"
    FIELDS = ("arch", "size", "input_shape", "hidden", "channels", "activation", "dropout", "input_mean",
              "input_std", "target_mean", "target_std", "num_labels", "id2label", "label2id", "problem_type")

    def __init__(
        self,
        arch: str = "mlp",
        size: str = "tiny",  # vgg: a named size of danlu.models.vgg.VGG_SIZES
        input_shape: list[int] | None = None,  # [features] or [channels, height, width]
        hidden: list[int] | None = None,
        channels: list[int] | None = None,
        activation: str = "relu",
        dropout: float = 0.0,
        input_mean: list[float] | None = None,  # per feature (tabular) or per channel (images)
        input_std: list[float] | None = None,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        num_labels: int = 2,
        id2label: dict | None = None,
        label2id: dict | None = None,
        problem_type: str = "single_label_classification",
        **_ignored,
    ):
        self.arch = arch
        self.size = size
        self.input_shape = list(input_shape or [1])
        self.hidden = list(hidden if hidden is not None else [128])
        self.channels = list(channels or [32, 64])
        self.activation = activation
        self.dropout = float(dropout)
        self.input_mean = input_mean
        self.input_std = input_std
        self.target_mean = float(target_mean)
        self.target_std = float(target_std)
        self.num_labels = int(num_labels)
        # JSON keys are strings: id2label comes back from config.json with "0", "1" ...
        self.id2label = {int(k): str(v) for k, v in (id2label or {}).items()}
        self.label2id = {str(k): int(v) for k, v in (label2id or {}).items()}
        self.problem_type = problem_type

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, "architectures": ["ClassicModel"],
                **{k: getattr(self, k) for k in self.FIELDS}}

    def save_pretrained(self, folder) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict) -> "ClassicConfig":
        if data.get("model_type") != cls.model_type:
            raise ValueError(f"not a danlu classic net (model_type {data.get('model_type')!r})")
        return cls(**{k: data[k] for k in cls.FIELDS if k in data})


class ClassicOutput(dict):
    """{"loss", "logits"}, readable as attributes too (the engines read either form)."""

    @property
    def loss(self):
        return self.get("loss")

    @property
    def logits(self):
        return self["logits"]


class ClassicModel(nn.Module):
    """forward(inputs | pixel_values, labels) -> loss, logits. One output per class, or one for regression."""

    main_input_name = "inputs"

    def __init__(self, config: ClassicConfig):
        super().__init__()
        self.config = config
        shape = config.input_shape
        self.regression = config.problem_type == "regression"
        outputs = 1 if self.regression else config.num_labels
        # Persistent buffers: saved with the weights, so a loaded model normalises the same way.
        self.register_buffer("mean", _stat(config.input_mean, shape, 0.0))
        self.register_buffer("std", _stat(config.input_std, shape, 1.0))
        act = ACTIVATIONS[config.activation]
        if config.arch == "vgg":
            self.body, width = vgg_body(shape[0], config.size, act)
            self.head = probe_head(width, outputs, config.dropout)
        else:
            if config.arch == "cnn":
                self.body, width = _conv_body(shape[0], config.channels, act)
            else:
                self.body, width = _mlp_body(_numel(shape), config.hidden, act, config.dropout)
            self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, outputs))
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_uniform_(module.weight, a=5**0.5)  # torch's default for the weights
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, inputs=None, pixel_values=None, labels=None, **_):
        x = inputs if inputs is not None else pixel_values
        x = (x.float() - self.mean) / self.std
        if self.config.arch not in CONVOLUTIONAL:
            x = x.flatten(1)  # (B, F)
        out = self.head(self.body(x))  # (B, classes) or (B, 1)
        if self.regression:
            scaled = out.squeeze(-1)
            logits = scaled * self.config.target_std + self.config.target_mean
            loss = None
            if labels is not None:
                target = (labels.float() - self.config.target_mean) / self.config.target_std
                loss = nn.functional.mse_loss(scaled.float(), target)
            return ClassicOutput(loss=loss, logits=logits.unsqueeze(-1))
        loss = nn.functional.cross_entropy(out.float(), labels) if labels is not None else None
        return ClassicOutput(loss=loss, logits=out)

    # -- the Hugging Face folder layout, without transformers --------------------------
    def save_pretrained(self, folder, **_ignored) -> None:
        folder = Path(folder)
        self.config.save_pretrained(folder)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_FILE))

    @classmethod
    def from_pretrained(cls, folder, **_ignored) -> "ClassicModel":
        folder = Path(folder)
        config = ClassicConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")))
        model = cls(config)
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        return model.eval()


def is_classic(folder) -> bool:
    """Whether the model folder holds a classic net (config.json says so)."""
    try:
        return json.loads((Path(folder) / CONFIG_FILE).read_text(encoding="utf-8")).get("model_type") == \
            ClassicConfig.model_type
    except (OSError, ValueError):
        return False


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _stat(values: list[float] | None, shape: list[int], default: float) -> torch.Tensor:
    if values is None:
        return torch.tensor(default)
    t = torch.tensor(values, dtype=torch.float32)
    if len(shape) == 3:  # per channel, applied before any flattening
        return t.view(1, -1, 1, 1)
    return t.view(1, -1)


def _mlp_body(width: int, hidden: list[int], act, dropout: float) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, size), act()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = size
    return nn.Sequential(*layers), width


def _conv_body(in_channels: int, channels: list[int], act) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    for width in channels:
        layers += [
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            act(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            act(),
            nn.MaxPool2d(2, ceil_mode=True),
        ]
        in_channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # (B, C)
    return nn.Sequential(*layers), in_channels
