"""The video-classification task as the registry knows it, with its recipe section `video:`.

Light on purpose (pydantic only): the recipe is validated with it before pandas or torch load.
"""

from __future__ import annotations

from pydantic import Field

from danlu.evaluate.names import CLASSIFICATION
from danlu.recipe.sections import Section
from danlu.registry import Capabilities, TaskSpec


class VideoConfig(Section):
    """How a clip becomes what the model reads: `frames` frames sampled uniformly over the clip (the centre
    of each of `frames` equal stretches), each resized to a `size` square, RGB. A pretrained model reads
    its own processor's size and its config's frame count."""

    frames: int = Field(default=16, ge=1, le=512)
    size: int = Field(default=64, ge=8, le=1024)
    # videomae: a tubelet spans this many frames (frames must be a multiple of it)
    tubelet: int = Field(default=2, ge=1, le=16)


def _arch(recipe):
    if recipe.model.arch not in (None, "cnn", "videomae"):
        return ("model.arch", f"video classification builds cnn (per-frame CNN + temporal convolutions) or "
                              f"videomae models, or loads model.from; not '{recipe.model.arch}'")
    return None


def _cnn_fits(recipe):
    if recipe.model.from_ or recipe.model.arch == "videomae":
        return None
    pools = len(recipe.model.channels or (16, 32, 32))
    if recipe.video.size % 2 ** pools:
        return ("video.size", f"the frame CNN halves the frames {pools} times (model.channels): video.size must be "
                              f"a multiple of {2 ** pools}, not {recipe.video.size}")
    return None


def _videomae_fits(recipe):
    if recipe.model.from_ or recipe.model.arch != "videomae":
        return None
    video, patch = recipe.video, recipe.model.patch_size or 16
    if video.frames % video.tubelet:
        return ("video.frames", f"videomae cuts the clip into tubelets of video.tubelet ({video.tubelet}) frames: "
                                f"video.frames must be a multiple of it, not {video.frames}")
    if video.size % patch:
        return ("video.size", f"videomae cuts frames into model.patch_size ({patch}) squares: video.size must be "
                              f"a multiple of it, not {video.size}")
    return None


def _data_keys(recipe):
    found = []
    for key in recipe.data.not_default(("features", "categorical")):
        found.append((f"data.{key}", "video classification reads one clip per row; remove it"))
    if recipe.data.format not in ("auto", "csv", "tsv", "jsonl", "json", "parquet"):
        found.append(("data.format", f"video classification reads a folder of clips or a table of clip paths, not "
                                     f"{recipe.data.format}"))
    return found


def _defaults(recipe) -> None:
    recipe.data.columns.setdefault("video", ["video", "clip", "path", "file", "file_name", "filename"])


SPEC = TaskSpec(
    name="video-classification",
    kind="classification",
    task_class="danlu.tasks.video_classification.task:VideoClassification",
    roles=("video", "label"),
    input_roles=("video",),
    main_metric="accuracy",
    greater_is_better=True,
    metrics=CLASSIFICATION,
    summary="a video clip -> one of a fixed set of classes (actions, gestures, motion directions)",
    starter="danlu.tasks.video_classification:starter.yaml",
    sample="danlu.tasks.video_classification.sample:sample",
    sections={"video": VideoConfig},
    defaults=_defaults,
    checks=(_arch, _cnn_fits, _videomae_fits, _data_keys),
    capabilities=Capabilities(class_balance=True, export=("onnx", "safetensors")),
)
SPECS = (SPEC,)
