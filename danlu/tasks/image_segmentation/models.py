"""The segmentation networks: a small U-Net (Ronneberger et al. 2015) of danlu's own, and SegFormer
(Xie et al. 2021) from transformers, at named sizes.

The U-Net is a PreTrainedModel registered with the Auto classes under danlu's model type, so the
engines, checkpoints and `save_pretrained` (safetensors) work as for any transformers model, and
`AutoModelForSemanticSegmentation.from_pretrained(RUN/model)` builds it once danlu is imported (no
code is read from a run folder). Both answer `logits` (B, classes, h, w) and, given labels (B, H, W),
a cross-entropy loss that skips IGNORE pixels; SegFormer's logits are at a quarter of the input side
and are upsampled to the labels (its own loss does the same).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (AutoConfig, AutoModelForSemanticSegmentation, PretrainedConfig, PreTrainedModel,
                          SegformerConfig)
from transformers.modeling_outputs import SemanticSegmenterOutput

from danlu.tasks.image_segmentation.metrics import IGNORE

UNET_TYPE = "danlu_unet"

# U-Net: the first stage's channels (doubled at each of `depth` downsamplings). SegFormer: tiny is
# danlu's CPU size (MiT-b0 at half width, one block per stage); small = MiT-b0, base = MiT-b1.
SIZES = {
    "unet": {"tiny": dict(base_channels=16, depth=3), "small": dict(base_channels=32, depth=4),
             "base": dict(base_channels=64, depth=4)},
    "segformer": {
        "tiny": dict(hidden_sizes=[16, 32, 80, 128], depths=[1, 1, 1, 1], decoder_hidden_size=64),
        "small": dict(hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2], decoder_hidden_size=256),
        "base": dict(hidden_sizes=[64, 128, 320, 512], depths=[2, 2, 2, 2], decoder_hidden_size=256),
    },
}


class UNetConfig(PretrainedConfig):
    model_type = UNET_TYPE

    def __init__(self, num_channels: int = 3, base_channels: int = 16, depth: int = 3, dropout: float = 0.0,
                 semantic_loss_ignore_index: int = IGNORE, class_weights: list[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.class_weights = class_weights  # per class in the loss (segmentation.class_weights); None: all 1
        self.num_channels, self.base_channels, self.depth = num_channels, base_channels, depth
        self.dropout, self.semantic_loss_ignore_index = dropout, semantic_loss_ignore_index


def _block(inputs: int, outputs: int) -> nn.Sequential:
    """Two 3x3 convolutions, each with batch norm and ReLU (the U-Net's unit)."""
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(inplace=True),
        nn.Conv2d(outputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(inplace=True))


class UNetForSemanticSegmentation(PreTrainedModel):
    config_class = UNetConfig
    main_input_name = "pixel_values"
    base_model_prefix = "unet"

    def __init__(self, config: UNetConfig):
        super().__init__(config)
        widths = [config.base_channels * 2 ** i for i in range(config.depth + 1)]
        self.down = nn.ModuleList([_block(config.num_channels, widths[0])] +
                                  [_block(widths[i], widths[i + 1]) for i in range(config.depth)])
        self.pool = nn.MaxPool2d(2)
        self.upsample = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                       for i in reversed(range(config.depth))])
        self.up = nn.ModuleList([_block(2 * widths[i], widths[i]) for i in reversed(range(config.depth))])
        self.dropout = nn.Dropout2d(config.dropout)
        self.head = nn.Conv2d(widths[0], config.num_labels, 1)
        self.post_init()

    def forward(self, pixel_values, labels=None, **_):
        x, skips = pixel_values, []  # (B, C, H, W); H and W multiples of 2**depth
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()  # the bottom of the U has no skip of its own
        for upsample, block in zip(self.upsample, self.up):
            x = upsample(x)
            x = block(torch.cat([skips.pop(), x], dim=1))
        logits = self.head(self.dropout(x))  # (B, classes, H, W)
        loss = None
        if labels is not None:
            weights = self.config.class_weights
            loss = segmentation_loss(logits, labels, self.config.semantic_loss_ignore_index,
                                     None if weights is None else torch.as_tensor(weights, device=logits.device))
        return SemanticSegmenterOutput(loss=loss, logits=logits)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore: int = IGNORE,
                      weights: torch.Tensor | None = None) -> torch.Tensor:
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = nn.functional.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return nn.functional.cross_entropy(logits.float(), labels.long(), weight=weights, ignore_index=ignore)


def register() -> None:
    """Make danlu's U-Net known to the Auto classes (done on import; idempotent)."""
    AutoConfig.register(UNET_TYPE, UNetConfig, exist_ok=True)
    AutoModelForSemanticSegmentation.register(UNetConfig, UNetForSemanticSegmentation, exist_ok=True)


register()


def unet(size: str, channels: int, dropout: float, base_channels: int | None = None, depth: int | None = None,
         class_weights: list[float] | None = None, **labels) -> UNetForSemanticSegmentation:
    """A U-Net of a named size; `base_channels` and `depth` override it (model.channels[0], model.layers)."""
    shape = dict(SIZES["unet"][size])
    shape.update({k: v for k, v in (("base_channels", base_channels), ("depth", depth)) if v})
    return UNetForSemanticSegmentation(UNetConfig(num_channels=channels, dropout=dropout, class_weights=class_weights,
                                                  **shape, **labels))


def segformer_config(size: str, channels: int, dropout: float, **labels) -> SegformerConfig:
    shape = SIZES["segformer"][size]
    return SegformerConfig(num_channels=channels, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                           classifier_dropout_prob=dropout, semantic_loss_ignore_index=IGNORE, **shape, **labels)
