"""VGG-style convolutional bodies at named sizes (Simonyan & Zisserman 2015), sized for small images.

Each stage is a run of 3x3 convolutions (BatchNorm, activation) closed by a 2x2 max-pool; the body ends
in a global average pool, so any input side works. `base` is VGG-11 (configuration A) as CIFAR papers
use it; `tiny` and `small` are its first three stages at a quarter and half of its widths, the sizes a
2-core CPU trains in minutes. The classic net (danlu.models.classic) puts its head on this body.
"""

from __future__ import annotations

from torch import nn

# (width, convolutions) per stage
VGG_SIZES = {
    "tiny": [(32, 1), (64, 1), (128, 2)],
    "small": [(64, 1), (128, 1), (256, 2)],
    "base": [(64, 1), (128, 1), (256, 2), (512, 2), (512, 2)],
}


def vgg_stages(size: str) -> list[tuple[int, int]]:
    if size not in VGG_SIZES:
        raise ValueError(f"no VGG size '{size}' (sizes: {', '.join(VGG_SIZES)})")
    return VGG_SIZES[size]


def vgg_body(in_channels: int, size: str, act) -> tuple[nn.Module, int]:
    """The convolutional stages of VGG `size` -> (body mapping (B, C, H, W) to (B, width), width)."""
    layers: list[nn.Module] = []
    for width, convs in vgg_stages(size):
        for _ in range(convs):
            layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), act()]
            in_channels = width
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), in_channels


def probe_head(width: int, outputs: int, dropout: float) -> nn.Module:
    """A linear head that standardises the features it reads first (BatchNorm without scale or shift,
    as MAE's linear probe): the same head then trains as well on a frozen body whose features are large
    as on one whose features are tiny, such as a body left at its random initial weights."""
    return nn.Sequential(nn.BatchNorm1d(width, affine=False), nn.Dropout(dropout), nn.Linear(width, outputs))
