"""The two audio tasks as the registry knows them, with their shared recipe section `audio:`.

Light on purpose (pydantic only): the recipe is validated with it before pandas or torch load.
"""

from __future__ import annotations

from pydantic import Field

from danlu.evaluate.names import CLASSIFICATION
from danlu.recipe.sections import Section
from danlu.registry import Capabilities, TaskSpec

RECOGNITION_METRICS = ("wer", "cer", "exact", "loss")  # exact: the share of clips transcribed without a mistake
COMPRESS = ("onnx-fp32", "onnx-int8", "torch-int8")


class SpecAugmentConfig(Section):
    """Masks drawn afresh on every training example (Park et al. 2019); evaluation never sees them."""

    freq_masks: int = Field(default=2, ge=0, le=100)
    freq_width: int = Field(default=8, ge=0, le=1000)  # mel bins, at most, per mask
    time_masks: int = Field(default=2, ge=0, le=100)
    time_share: float = Field(default=0.05, ge=0, le=0.5)  # of the clip's frames, at most, per mask


class AudioConfig(Section):
    """How a clip becomes what the model reads: mono at `sampling_rate`, log-mel frames (25 ms windows every
    10 ms, per-clip normalised: transformers' ParakeetFeatureExtractor)."""

    sampling_rate: int = Field(default=16_000, ge=1_000, le=384_000)
    mel_bins: int = Field(default=64, ge=8, le=512)
    # The encoder's front end shortens the frames by this factor (2, 4 or 8) before its blocks.
    subsampling: int = Field(default=4, ge=2, le=8)
    spec_augment: SpecAugmentConfig | None = Field(default_factory=SpecAugmentConfig)
    # Clips longer than this are cut to it (training and prediction); the gate's duration rule reports them.
    max_seconds: float = Field(default=30.0, gt=0, le=3600)
    lowercase: bool = True  # recognition: transcripts are lowercased before the vocabulary is built


def _arch(recipe):
    if recipe.model.arch not in (None, "conformer"):
        return ("model.arch", f"the audio tasks build a conformer (model.size tiny | small | base) or load "
                              f"model.from; not '{recipe.model.arch}'")
    return None


def _subsampling(recipe):
    if recipe.audio.subsampling not in (2, 4, 8):
        return ("audio.subsampling", f"the encoder's front end halves the frames 1, 2 or 3 times: 2, 4 or 8, "
                                     f"not {recipe.audio.subsampling}")
    return None


def _data_keys(recipe):
    found = []
    for key in recipe.data.not_default(("features", "categorical")):
        found.append((f"data.{key}", "the audio tasks read a clip per row; remove it"))
    if recipe.data.format in ("imagefolder", "image_csv", "idx", "txt"):
        found.append(("data.format", f"the audio tasks read an audio folder or a table of clip paths, not "
                                     f"{recipe.data.format}"))
    return found


def _defaults(recipe) -> None:
    recipe.data.columns.setdefault("audio", ["audio", "path", "file", "file_name", "filename"])
    if recipe.task == "speech-recognition":
        recipe.data.columns.setdefault("transcript", ["transcript", "text", "sentence", "transcription"])


_COMMON = dict(
    starter=None,
    sections={"audio": AudioConfig},
    defaults=_defaults,
    checks=(_arch, _subsampling, _data_keys),
)

CLASSIFY = TaskSpec(
    name="audio-classification",
    kind="classification",
    task_class="danlu.tasks.audio.task:AudioClassification",
    roles=("audio", "label"),
    input_roles=("audio",),
    main_metric="accuracy",
    greater_is_better=True,
    metrics=CLASSIFICATION,
    summary="a sound clip -> one of a fixed set of classes (spoken commands, digits, machine sounds)",
    sample="danlu.tasks.audio.sample:classification_sample",
    capabilities=Capabilities(cross_validation=True, class_balance=True, transformer_layers=True, distill=True,
                              compress=COMPRESS, export=("onnx", "safetensors")),
    **{**_COMMON, "starter": "danlu.tasks.audio:classification.yaml"},
)
RECOGNIZE = TaskSpec(
    name="speech-recognition",
    kind="speech-recognition",
    task_class="danlu.tasks.audio.task:SpeechRecognition",
    roles=("audio", "transcript"),
    input_roles=("audio",),
    main_metric="wer",
    greater_is_better=False,
    metrics=RECOGNITION_METRICS,
    summary="speech -> its transcript (a Conformer with a CTC head over characters; WER and CER)",
    sample="danlu.tasks.audio.sample:recognition_sample",
    capabilities=Capabilities(transformer_layers=True, compress=COMPRESS, export=("onnx", "safetensors")),
    **{**_COMMON, "starter": "danlu.tasks.audio:recognition.yaml"},
)
SPECS = (CLASSIFY, RECOGNIZE)
