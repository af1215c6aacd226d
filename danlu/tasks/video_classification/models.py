"""The networks the video task builds from scratch.

`frame_conv`: a small 2D CNN on every frame, its feature map flattened (so the features say where things
are), then 1D convolutions over time and a pooled linear head. The temporal convolutions see the frames
in order, so the network can tell a digit moving left from one moving right; a mean over per-frame
features alone could not. It is a PreTrainedModel registered with the Auto classes under danlu's own
model type, so the engines, checkpoints and `save_pretrained` (safetensors) work as for any transformers
model, and `AutoModelForVideoClassification.from_pretrained(RUN/model)` builds it once danlu is imported
(no code is read from a run folder).

`videomae`: transformers' VideoMAEForVideoClassification (a ViT over space-time tubelets with position
embeddings), at a named ViT size.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (AutoConfig, AutoModelForVideoClassification, PretrainedConfig, PreTrainedModel,
                          VideoMAEConfig, VideoMAEForVideoClassification)
from transformers.modeling_outputs import ImageClassifierOutput

FRAME_CONV_TYPE = "danlu_frame_conv_video"


class FrameConvConfig(PretrainedConfig):
    model_type = FRAME_CONV_TYPE

    def __init__(self, num_frames: int = 8, image_size: int = 32, num_channels: int = 3,
                 channels: list[int] | None = None, hidden_size: int = 64, temporal_layers: int = 2,
                 temporal_kernel: int = 3, dropout: float = 0.1, input_mean: list[float] | None = None,
                 input_std: list[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_frames, self.image_size, self.num_channels = num_frames, image_size, num_channels
        self.channels = list(channels or [16, 32, 32])
        self.hidden_size, self.temporal_layers, self.temporal_kernel = hidden_size, temporal_layers, temporal_kernel
        self.dropout = dropout
        self.input_mean = list(input_mean or [0.0] * num_channels)
        self.input_std = list(input_std or [1.0] * num_channels)


class FrameConvForVideoClassification(PreTrainedModel):
    """pixel_values (B, T, C, H, W) in [0, 1] -> logits (B, classes)."""

    config_class = FrameConvConfig
    main_input_name = "pixel_values"

    def __init__(self, config: FrameConvConfig):
        super().__init__(config)
        layers, width = [], config.num_channels
        for out in config.channels:
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            width = out
        self.frame_cnn = nn.Sequential(*layers)
        side = config.image_size // 2 ** len(config.channels)
        self.frame_proj = nn.Linear(width * side * side, config.hidden_size)
        temporal = []
        for _ in range(config.temporal_layers):
            temporal += [nn.Conv1d(config.hidden_size, config.hidden_size, config.temporal_kernel,
                                   padding=config.temporal_kernel // 2), nn.ReLU()]
        self.temporal = nn.Sequential(*temporal)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(2 * config.hidden_size, config.num_labels)
        # Persistent: saved with the weights (a loaded model's non-persistent buffers would be left unset).
        self.register_buffer("mean", torch.tensor(config.input_mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(config.input_std).view(1, -1, 1, 1))
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(module.weight, a=5 ** 0.5)  # torch's default, as a freshly built layer
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, pixel_values, labels=None, **_):
        b, t = pixel_values.shape[:2]
        frames = (pixel_values.flatten(0, 1) - self.mean) / self.std  # (B*T, C, H, W)
        features = self.frame_proj(self.frame_cnn(frames).flatten(1)).relu()  # (B*T, D)
        states = self.temporal(features.view(b, t, -1).transpose(1, 2))  # (B, D, T)
        pooled = torch.cat([states.mean(-1), states.amax(-1)], dim=-1)  # (B, 2D)
        logits = self.classifier(self.dropout(pooled))
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


def register() -> None:
    """Make danlu's model type known to the Auto classes (done on import; idempotent)."""
    AutoConfig.register(FRAME_CONV_TYPE, FrameConvConfig, exist_ok=True)
    AutoModelForVideoClassification.register(FrameConvConfig, FrameConvForVideoClassification, exist_ok=True)


register()


def videomae_model(shape: dict, frames: int, size: int, patch: int, tubelet: int, dropout: float,
                   **labels) -> VideoMAEForVideoClassification:
    config = VideoMAEConfig(image_size=size, patch_size=patch, num_frames=frames, tubelet_size=tubelet,
                            hidden_size=shape["embedding"], num_hidden_layers=shape["layers"],
                            num_attention_heads=shape["heads"], intermediate_size=shape["feed_forward"],
                            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                            use_mean_pooling=True, **labels)
    return VideoMAEForVideoClassification(config)
