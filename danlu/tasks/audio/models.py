"""The networks the audio tasks build from scratch, on transformers' FastConformer (Parakeet) encoder:
a Conformer over log-mel frames, with a CTC head (speech recognition) or a pooled classification head.

Both are PreTrainedModels registered with the Auto classes under danlu's own model types, so the
engine, checkpoints and `save_pretrained` (safetensors) work as for any transformers model, and
`AutoModelForCTC` / `AutoModelForAudioClassification.from_pretrained(RUN/model)` build them once danlu
is imported (no code is read from a run folder).

The CTC model writes a blank at every padded frame: batches of different lengths then join into one
array whose padding decodes to nothing, whoever reads it (the evaluation loop, a compressed variant's
measurement, ONNX Runtime).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (AutoConfig, AutoModelForAudioClassification, AutoModelForCTC, ParakeetCTCConfig,
                          ParakeetEncoderConfig, ParakeetForCTC, PreTrainedModel)
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.parakeet.modeling_parakeet import ParakeetEncoder

CTC_TYPE = "danlu_conformer_ctc"
CLASSIFIER_TYPE = "danlu_conformer_classifier"
BLANK_FILL = -1.0e4  # the logit of every non-blank token at a padded frame


class ConformerCtcConfig(ParakeetCTCConfig):
    model_type = CTC_TYPE


class ConformerForCTC(ParakeetForCTC):
    config_class = ConformerCtcConfig

    def forward(self, input_features, attention_mask=None, labels=None, **kwargs):
        out = super().forward(input_features=input_features, attention_mask=attention_mask, labels=labels, **kwargs)
        if attention_mask is not None:
            frames = self._get_output_attention_mask(attention_mask, target_length=out.logits.shape[1]).bool()
            blank = torch.full_like(out.logits[:1, :1], BLANK_FILL)
            blank[..., self.config.pad_token_id] = 0.0
            out.logits = torch.where(frames[..., None], out.logits, blank)
        return out


class ConformerClassifierConfig(ParakeetEncoderConfig):
    model_type = CLASSIFIER_TYPE


class ConformerForAudioClassification(PreTrainedModel):
    """The encoder's frames, averaged over the real (unpadded) ones, then a linear layer per class."""

    config_class = ConformerClassifierConfig
    base_model_prefix = "encoder"
    main_input_name = "input_features"

    def __init__(self, config: ConformerClassifierConfig):
        super().__init__(config)
        self.encoder = ParakeetEncoder(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_features, attention_mask=None, labels=None, **_):
        out = self.encoder(input_features=input_features, attention_mask=attention_mask)
        states = out.last_hidden_state
        if out.attention_mask is not None:
            weights = out.attention_mask.to(states.dtype)[..., None]
            pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        else:
            pooled = states.mean(1)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def register() -> None:
    """Make danlu's model types known to the Auto classes (done on import; idempotent)."""
    AutoConfig.register(CTC_TYPE, ConformerCtcConfig, exist_ok=True)
    AutoModelForCTC.register(ConformerCtcConfig, ConformerForCTC, exist_ok=True)
    AutoConfig.register(CLASSIFIER_TYPE, ConformerClassifierConfig, exist_ok=True)
    AutoModelForAudioClassification.register(ConformerClassifierConfig, ConformerForAudioClassification,
                                             exist_ok=True)


register()


def encoder_settings(shape: dict, mel_bins: int, subsampling: int, dropout: float) -> dict:
    """The encoder's config keys for a named size (danlu.models.shape_of) and the audio section."""
    return dict(hidden_size=shape["embedding"], num_hidden_layers=shape["layers"],
                num_attention_heads=shape["heads"], intermediate_size=shape["feed_forward"],
                subsampling_factor=subsampling, subsampling_conv_channels=max(32, shape["embedding"] // 2),
                num_mel_bins=mel_bins, dropout=dropout, activation_dropout=dropout, attention_dropout=dropout,
                layerdrop=0.0, conv_kernel_size=9)


def ctc_model(shape: dict, mel_bins: int, subsampling: int, dropout: float, vocab_size: int,
              blank_id: int) -> ConformerForCTC:
    encoder = ParakeetEncoderConfig(**encoder_settings(shape, mel_bins, subsampling, dropout))
    return ConformerForCTC(ConformerCtcConfig(vocab_size=vocab_size, pad_token_id=blank_id,
                                           encoder_config=encoder.to_dict()))


def classifier_model(shape: dict, mel_bins: int, subsampling: int, dropout: float, **labels) -> ConformerForAudioClassification:
    return ConformerForAudioClassification(ConformerClassifierConfig(**encoder_settings(shape, mel_bins, subsampling, dropout),
                                                         **labels))
