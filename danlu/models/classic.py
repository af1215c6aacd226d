"""The classic nets transformers lacks: an MLP and a small CNN.

They are PreTrainedModels so that they train under transformers.Trainer and save with
save_pretrained (config.json + model.safetensors) like every other danlu model. The model
carries its own input normalisation and, for regression, its target scale, so a saved model
needs nothing beside it to give the right numbers.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class ClassicConfig(PretrainedConfig):
    model_type = "danlu_classic"

    def __init__(
        self,
        arch: str = "mlp",
        input_shape: list[int] | None = None,  # [features] or [channels, height, width]
        hidden: list[int] | None = None,
        channels: list[int] | None = None,
        activation: str = "relu",
        dropout: float = 0.0,
        input_mean: list[float] | None = None,  # per feature (tabular) or per channel (images)
        input_std: list[float] | None = None,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        **kwargs,
    ):
        self.arch = arch
        self.input_shape = list(input_shape or [1])
        self.hidden = list(hidden if hidden is not None else [128])
        self.channels = list(channels or [32, 64])
        self.activation = activation
        self.dropout = dropout
        self.input_mean = input_mean
        self.input_std = input_std
        self.target_mean = target_mean
        self.target_std = target_std
        super().__init__(**kwargs)


class ClassicModel(PreTrainedModel):
    """forward(inputs | pixel_values, labels) -> loss, logits. One output per class, or one for regression."""

    config_class = ClassicConfig
    main_input_name = "inputs"
    _no_split_modules: list[str] = []

    def __init__(self, config: ClassicConfig):
        super().__init__(config)
        shape = config.input_shape
        self.regression = config.problem_type == "regression"
        outputs = 1 if self.regression else config.num_labels
        # Persistent buffers: saved with the weights, so a loaded model normalises the same way.
        self.register_buffer("mean", _stat(config.input_mean, shape, 0.0))
        self.register_buffer("std", _stat(config.input_std, shape, 1.0))
        act = ACTIVATIONS[config.activation]
        if config.arch == "cnn":
            self.body, width = _conv_body(shape[0], config.channels, act)
        else:
            self.body, width = _mlp_body(_numel(shape), config.hidden, act, config.dropout)
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, outputs))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(module.weight, a=5**0.5)  # torch's default, kept under post_init
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, inputs=None, pixel_values=None, labels=None, **_):
        x = inputs if inputs is not None else pixel_values
        x = (x.float() - self.mean) / self.std
        if self.config.arch != "cnn":
            x = x.flatten(1)  # (B, F)
        out = self.head(self.body(x))  # (B, classes) or (B, 1)
        if self.regression:
            scaled = out.squeeze(-1)
            logits = scaled * self.config.target_std + self.config.target_mean
            loss = None
            if labels is not None:
                target = (labels.float() - self.config.target_mean) / self.config.target_std
                loss = nn.functional.mse_loss(scaled.float(), target)
            return SequenceClassifierOutput(loss=loss, logits=logits.unsqueeze(-1))
        loss = nn.functional.cross_entropy(out.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=out)


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


AutoConfig.register("danlu_classic", ClassicConfig, exist_ok=True)
AutoModel.register(ClassicConfig, ClassicModel, exist_ok=True)
