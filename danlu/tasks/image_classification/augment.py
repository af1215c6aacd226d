"""Random views of a batch of images for the self-supervised objectives, on tensors (no torchvision).

SimCLR's CIFAR-10 augmentations (Chen et al. 2020, appendix B.9): a random resized crop with a
horizontal flip, colour jitter (brightness, contrast, saturation, hue) with probability 0.8, and a grey
copy with probability 0.2. Every image of the batch draws its own parameters; the crop and flip are one
affine resampling (grid_sample), so a batch costs a few tensor operations, not a Python loop per image.
Pixels are in [0, 1], shaped (B, C, H, W); grey images (C = 1) get no saturation, hue or grey step.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

# ITU-R BT.601 luma weights, as PIL's convert("L")
LUMA = (0.299, 0.587, 0.114)
# RGB <-> YIQ: a hue shift is a rotation of the (I, Q) chroma plane
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _uniform(n: int, low: float, high: float, gen: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def crop_and_flip(x: torch.Tensor, scale: tuple[float, float], gen: torch.Generator | None = None,
                  flip: bool = True) -> torch.Tensor:
    """RandomResizedCrop(area share in `scale`, aspect ratio 3/4-4/3) + a horizontal flip half the time,
    resampled back to the input size."""
    n = x.shape[0]
    area = _uniform(n, *scale, gen)
    log_ratio = _uniform(n, math.log(3 / 4), math.log(4 / 3), gen)
    # A large crop cannot take every ratio and still fit: area x ratio <= 1 and area / ratio <= 1.
    ratio = torch.exp(torch.minimum(torch.maximum(log_ratio, area.log()), -area.log()))
    w = torch.sqrt(area * ratio).clamp(max=1.0)  # crop side / image side
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (1 - w) * (2 * torch.rand(n, generator=gen) - 1)  # the crop's centre, in grid units [-1, 1]
    cy = (1 - h) * (2 * torch.rand(n, generator=gen) - 1)
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _grey(x: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)  # (B, 1, H, W)


def colour_jitter(x: torch.Tensor, strength: float, p: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """torchvision's ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) applied with probability p (in a fixed order)."""
    n, channels = x.shape[0], x.shape[1]
    on = (torch.rand(n, generator=gen) < p).to(x).view(n, 1, 1, 1)
    s = 0.8 * strength

    def factor() -> torch.Tensor:
        return _uniform(n, max(0.0, 1 - s), 1 + s, gen).to(x).view(n, 1, 1, 1)

    out = x * factor()  # brightness
    mean = (_grey(out) if channels == 3 else out).mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * factor() + mean  # contrast
    if channels == 3:
        grey = _grey(out)
        out = (out - grey) * factor() + grey  # saturation
        out = _hue_shift(out, _uniform(n, -0.2 * strength, 0.2 * strength, gen).to(x))
    out = out.clamp(0, 1)
    return on * out + (1 - on) * x


def _hue_shift(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    yiq = _YIQ.to(x)
    angle = 2 * math.pi * turns
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(x.shape[0], 3, 3, dtype=x.dtype, device=x.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    matrix = torch.linalg.inv(yiq) @ rot @ yiq  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", matrix, x)


def random_grey(x: torch.Tensor, p: float, gen: torch.Generator | None = None) -> torch.Tensor:
    if x.shape[1] != 3:
        return x
    on = (torch.rand(x.shape[0], generator=gen) < p).to(x).view(-1, 1, 1, 1)
    return on * _grey(x).expand_as(x) + (1 - on) * x


def simclr_view(x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """One SimCLR view of each image: jitter strength 0.5 as SimCLR for CIFAR-10, crop area 20-100% as
    SimSiam and MoCo for CIFAR-10 (at 32x32 an 8% crop is 9x9 pixels)."""
    out = crop_and_flip(x, (0.2, 1.0), gen)
    out = colour_jitter(out, 0.5, 0.8, gen)
    return random_grey(out, 0.2, gen)
