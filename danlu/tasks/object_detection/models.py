"""The detectors: a small CenterNet (the default), and transformers' set-prediction detectors.

CenterNet (Zhou et al. 2019, "Objects as Points"): a small CNN whose stride-4 feature map, fused with
the coarser levels (a light FPN), predicts per cell a heatmap of object centres per class, the box's
width and height and the centre's sub-cell offset. One forward, no anchors, no matching: it learns
digits on canvases in minutes on two CPU cores, where the DETR family's Hungarian matching needs
hundreds of epochs to converge (Carion et al. 2020 train for 500). It is a PreTrainedModel registered
with the Auto classes under danlu's model type, so `save_pretrained` (safetensors) and
`AutoModelForObjectDetection.from_pretrained(RUN/model)` work once danlu is imported.

DETR, Conditional DETR, RT-DETR and YOLOS come from transformers at named sizes (a transformers
ResNet backbone, no timm or torchvision), or from a pretrained checkpoint. `SetDetector` adapts them to
the one inference path: it takes the padded box tensor danlu collates (class, x1, y1, x2, y2; class
-1 pads) and answers `logits` = class scores and boxes side by side.

Labels everywhere: (B, M, 5) float, [class id, x1, y1, x2, y2] normalised to [0, 1], class -1 = none.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForObjectDetection, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

CENTERNET_TYPE = "danlu_centernet"
STRIDE = 4  # the output map is the input's side / 4
CENTERNET_SIZES = {"tiny": [16, 32, 64, 128], "small": [24, 48, 96, 192], "base": [32, 64, 128, 256]}
SIZE_WEIGHT, OFFSET_WEIGHT = 0.1, 1.0  # the paper's loss weights
MIN_OVERLAP = 0.7  # CornerNet's Gaussian radius: a box shifted by it still overlaps the truth this much


class CenterNetConfig(PretrainedConfig):
    model_type = CENTERNET_TYPE

    def __init__(self, channels=(16, 32, 64, 128), num_channels: int = 3, head_channels: int = 64,
                 input_mean=None, input_std=None, **kwargs):
        self.channels = list(channels)
        self.num_channels = num_channels
        self.head_channels = head_channels
        self.input_mean = list(input_mean) if input_mean else [0.5] * num_channels
        self.input_std = list(input_std) if input_std else [0.25] * num_channels
        super().__init__(**kwargs)


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class CenterNetForObjectDetection(PreTrainedModel):
    """logits: (B, C + 4, H/4, W/4): C centre-heatmap logits, then width, height (in output cells) and the
    centre's x, y offset within its cell."""

    config_class = CenterNetConfig
    main_input_name = "pixel_values"

    def __init__(self, config: CenterNetConfig):
        super().__init__(config)
        c = config.channels
        # stem to stride 2, then one stage per width: strides 4, 8, 16, ...
        self.stem = _conv(config.num_channels, c[0], 2)
        self.stages = nn.ModuleList(nn.Sequential(_conv(a, b, 2), _conv(b, b)) for a, b in zip([c[0]] + c[1:-1], c[1:]))
        self.lateral = nn.ModuleList(nn.Conv2d(w, c[1], 1) for w in c[1:])
        self.fuse = _conv(c[1], config.head_channels)
        hc = config.head_channels
        # One shared 3x3 trunk, then a 1x1 per output: the three heads of the paper cost 3x the trunk.
        self.trunk = nn.Sequential(nn.Conv2d(hc, hc, 3, padding=1), nn.ReLU(inplace=True))
        self.heads = nn.ModuleDict({"heat": nn.Conv2d(hc, config.num_labels, 1), "size": nn.Conv2d(hc, 2, 1),
                                    "offset": nn.Conv2d(hc, 2, 1)})
        self.register_buffer("mean", torch.tensor(config.input_mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(config.input_std).view(1, -1, 1, 1))
        self.post_init()
        # The paper's head init: outputs start near 0 (sizes, offsets) and the heatmap at a prior of 0.1 per
        # cell (bias -2.19); Kaiming-scaled heads start with losses in the hundreds.
        for head in self.heads.values():
            nn.init.normal_(head.weight, std=0.001)
        nn.init.constant_(self.heads["heat"].bias, -2.19)

    def _init_weights(self, module):
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, pixel_values, labels=None, **_):
        x = self.stem((pixel_values - self.mean) / self.std)
        levels = []
        for stage in self.stages:
            x = stage(x)
            levels.append(x)
        top = self.lateral[-1](levels[-1])
        for level, lateral in zip(reversed(levels[:-1]), reversed(self.lateral[:-1])):
            top = nn.functional.interpolate(top, size=level.shape[-2:], mode="nearest") + lateral(level)
        features = self.trunk(self.fuse(top))
        logits = torch.cat([self.heads["heat"](features), self.heads["size"](features),
                            self.heads["offset"](features)], dim=1)
        loss = centernet_loss(logits.float(), labels, self.config.num_labels) if labels is not None else None
        return ModelOutput(loss=loss, logits=logits)


def gaussian_radius(height: float, width: float, min_overlap: float = MIN_OVERLAP) -> float:
    """CornerNet's radius (the smallest of its three cases) for a box of this size, in output cells."""
    a1, b1, c1 = 1, height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (height + width), (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def centernet_targets(labels: torch.Tensor, classes: int, height: int, width: int):
    """(heatmap (B, C, H, W), sizes (B, 2, H, W), offsets (B, 2, H, W), centre mask (B, H, W)) in cells."""
    boxes = labels.detach().float().cpu().numpy()
    batch = len(boxes)
    heat = np.zeros((batch, classes, height, width), dtype=np.float32)
    size = np.zeros((batch, 2, height, width), dtype=np.float32)
    offset = np.zeros((batch, 2, height, width), dtype=np.float32)
    mask = np.zeros((batch, height, width), dtype=np.float32)
    ys, xs = np.arange(height)[:, None], np.arange(width)[None, :]
    for b in range(batch):
        for cls, x1, y1, x2, y2 in boxes[b]:
            if cls < 0:
                continue
            w, h = (x2 - x1) * width, (y2 - y1) * height
            if w <= 0 or h <= 0:
                continue
            cx, cy = (x1 + x2) / 2 * width, (y1 + y2) / 2 * height
            ix, iy = min(int(cx), width - 1), min(int(cy), height - 1)
            sigma = (2 * max(0, int(gaussian_radius(h, w))) + 1) / 6
            blob = np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma ** 2))
            np.maximum(heat[b, int(cls)], blob, out=heat[b, int(cls)])
            size[b, :, iy, ix] = (w, h)
            offset[b, :, iy, ix] = (cx - ix, cy - iy)
            mask[b, iy, ix] = 1.0
    return tuple(torch.as_tensor(t, device=labels.device) for t in (heat, size, offset, mask))


def centernet_loss(logits: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Penalty-reduced focal loss on the heatmap (alpha 2, beta 4) + L1 on size and offset at the centres."""
    heat_t, size_t, offset_t, mask = centernet_targets(labels, classes, logits.shape[-2], logits.shape[-1])
    heat = logits[:, :classes].sigmoid().clamp(1e-4, 1 - 1e-4)
    positive = heat_t.eq(1).float()
    pos_loss = torch.log(heat) * (1 - heat) ** 2 * positive
    neg_loss = torch.log(1 - heat) * heat ** 2 * (1 - heat_t) ** 4 * (1 - positive)
    count = positive.sum().clamp(min=1.0)
    focal = -(pos_loss.sum() + neg_loss.sum()) / count
    centres = mask[:, None]
    size_loss = (nn.functional.l1_loss(logits[:, classes:classes + 2], size_t, reduction="none") * centres).sum()
    offset_loss = (nn.functional.l1_loss(logits[:, classes + 2:classes + 4], offset_t, reduction="none") * centres).sum()
    n = mask.sum().clamp(min=1.0)
    return focal + SIZE_WEIGHT * size_loss / n + OFFSET_WEIGHT * offset_loss / n


def register() -> None:
    """Make danlu's model type known to the Auto classes (done on import; idempotent)."""
    AutoConfig.register(CENTERNET_TYPE, CenterNetConfig, exist_ok=True)
    AutoModelForObjectDetection.register(CenterNetConfig, CenterNetForObjectDetection, exist_ok=True)


register()


# -- transformers' set-prediction detectors ----------------------------------------------------
# Named sizes of the transformer part; the backbone is a transformers ResNet of the same scale.
SET_SIZES = {"tiny": dict(d_model=64, layers=2, heads=4, ffn=128, queries=30, widths=[16, 32, 64, 128]),
             "small": dict(d_model=128, layers=3, heads=8, ffn=512, queries=50, widths=[32, 64, 128, 256]),
             "base": dict(d_model=256, layers=6, heads=8, ffn=1024, queries=100, widths=[64, 128, 256, 512])}


def set_detector_config(arch: str, size: str, image_size: int, overrides: dict, **labels):
    """The config of a DETR / Conditional DETR / RT-DETR / YOLOS built from scratch at a named size."""
    import transformers as tf

    shape = {**SET_SIZES[size], **{k: v for k, v in overrides.items() if v is not None}}
    d, layers, heads, ffn, queries = (shape[k] for k in ("d_model", "layers", "heads", "ffn", "queries"))
    widths = shape["widths"]
    resnet = dict(embedding_size=widths[0], hidden_sizes=widths, depths=[1, 1, 1, 1], layer_type="basic")
    if arch == "yolos":
        return tf.YolosConfig(image_size=[image_size, image_size], patch_size=max(4, image_size // 16), hidden_size=d,
                              num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=ffn,
                              num_detection_tokens=queries, **labels)
    if arch == "rt_detr":
        # Its queries are the best of the encoder's cells at strides 8, 16, 32: no more than there are.
        queries = min(queries, sum(math.ceil(image_size / s) ** 2 for s in (8, 16, 32)))
        return tf.RTDetrConfig(
            backbone_config=tf.RTDetrResNetConfig(**resnet, out_features=["stage2", "stage3", "stage4"]),
            encoder_in_channels=widths[1:], encoder_hidden_dim=d, d_model=d, decoder_in_channels=[d, d, d],
            encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, encoder_layers=1, decoder_layers=layers,
            encoder_attention_heads=heads, decoder_attention_heads=heads, num_queries=queries, num_denoising=0,
            **labels)
    common = dict(use_timm_backbone=False, use_pretrained_backbone=False,
                  backbone_config=tf.ResNetConfig(**resnet, out_features=["stage4"]), d_model=d,
                  encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=heads,
                  decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, num_queries=queries,
                  **labels)
    return (tf.ConditionalDetrConfig if arch == "conditional_detr" else tf.DetrConfig)(**common)


class SetDetector(nn.Module):
    """A transformers detector (logits (B, Q, C or C + 1), pred_boxes (B, Q, 4) as cx, cy, w, h) on danlu's
    batches: `logits` out = [class logits..., x1, y1, x2, y2], Q rows per image."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, pixel_values, labels=None, **_):
        targets = None
        if labels is not None:
            targets = []
            for rows in labels:
                rows = rows[rows[:, 0] >= 0]
                xyxy = rows[:, 1:].float()
                boxes = torch.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                                     xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], dim=-1)
                targets.append({"class_labels": rows[:, 0].long(), "boxes": boxes})
        out = self.model(pixel_values=pixel_values, labels=targets)
        cx, cy, w, h = out.pred_boxes.unbind(-1)
        corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
        return ModelOutput(loss=out.loss, logits=torch.cat([out.logits, corners.to(out.logits.dtype)], dim=-1))

    def save_pretrained(self, out_dir) -> None:
        self.model.save_pretrained(out_dir)
