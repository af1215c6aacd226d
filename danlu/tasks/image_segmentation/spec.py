"""The image-segmentation task as the registry knows it, with its recipe section `segmentation:`.

Light on purpose (pydantic only): the recipe is validated with it before pandas or torch load.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from danlu.recipe.sections import Section
from danlu.registry import Capabilities, TaskSpec

METRICS = ("miou", "pixel_accuracy", "loss")
DEPTH = {"tiny": 3, "small": 4, "base": 4}  # the U-Net's downsamplings per named size (models.SIZES);
# model.layers overrides it, model.channels[0] the first stage's width


class AugmentConfig(Section):
    """Drawn afresh for every training image, the mask moved with it; validation and test never see them."""

    flip: bool = False  # left-right, half the time (off by default: it turns a digit or a letter into another)
    vflip: bool = False  # top-bottom, half the time
    # a random crop keeping at least (1 - crop) of each side, resized back to the input size
    crop: float = Field(default=0.0, ge=0.0, lt=1.0)


class SegmentationConfig(Section):
    # class names by mask value, 0 first (with COCO annotations: category names); default: from the training data
    classes: list[str] | None = Field(default=None, min_length=2, max_length=255)
    background: str = Field(default="background", min_length=1)  # the name of class 0 when the data names none
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    # the U-Net's loss per class: none (all 1), or sqrt_inverse: 1 / sqrt(the class's share of the training
    # pixels), scaled to a pixel-weighted mean of 1, so a class of 0.4% of the pixels is not lost under the
    # background's 96% (a plain loss settles on "some digit" there without learning which)
    class_weights: Literal["none", "sqrt_inverse"] = "none"
    shown: int = Field(default=4, ge=0, le=32)  # test images drawn with their masks in the report


def _arch(recipe):
    if recipe.model.arch not in (None, "unet", "segformer"):
        return ("model.arch", f"image segmentation builds a unet or a segformer (model.size tiny | small | base), "
                              f"or loads model.from; not '{recipe.model.arch}'")
    return None


def unet_depth(model) -> int:
    return model.layers or DEPTH[model.size]


def _unet_side(recipe):
    side, arch = recipe.model.image_size, recipe.model.arch or "unet"
    if side and arch == "unet" and not recipe.model.from_ and side % 2 ** unet_depth(recipe.model):
        depth = unet_depth(recipe.model)
        return ("model.image_size", f"a U-Net of depth {depth} halves the image {depth} times: the side must be "
                                    f"a multiple of {2 ** depth}, not {side}")
    return None


def _data_keys(recipe):
    return [(f"data.{key}", "image segmentation reads an image and its mask per row; remove it")
            for key in recipe.data.not_default(("features", "categorical"))]


def _defaults(recipe) -> None:
    recipe.data.columns.setdefault("image", ["image", "image_path", "file_name", "path"])
    recipe.data.columns.setdefault("mask", ["mask", "mask_path", "segmentation", "label"])


SPEC = TaskSpec(
    name="image-segmentation",
    kind="segmentation",
    task_class="danlu.tasks.image_segmentation.task:ImageSegmentation",
    roles=("image", "mask"),
    input_roles=("image",),
    main_metric="miou",
    greater_is_better=True,
    metrics=METRICS,
    summary="an image -> a class for every pixel (a U-Net or SegFormer; masks from PNGs or COCO polygons/RLE)",
    starter="danlu.tasks.image_segmentation:starter.yaml",
    sample="danlu.tasks.image_segmentation.sample:sample",
    data_stage="danlu.tasks.image_segmentation.data:load",
    sections={"segmentation": SegmentationConfig},
    defaults=_defaults,
    checks=(_arch, _unet_side, _data_keys),
    capabilities=Capabilities(export=("safetensors",)),
)
SPECS = (SPEC,)
