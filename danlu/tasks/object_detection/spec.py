"""The object-detection task as the registry knows it, with its recipe section `detection:`.

Light on purpose (pydantic only): the recipe is validated with it before pandas or torch load.
"""

from __future__ import annotations

from pydantic import Field

from danlu.recipe.sections import Section
from danlu.registry import Capabilities, TaskSpec

METRICS = ("map", "map_50", "map_75")  # COCO mAP@[.5:.95], @.5 and @.75 (pycocotools)
ARCHS = ("centernet", "detr", "conditional_detr", "rt_detr", "yolos")


class AugmentConfig(Section):
    """Drawn afresh for every training image; the boxes move with the pixels. Evaluation never sees it."""

    flip: bool = True  # mirror left-right with probability 0.5 (set false for digits, text, signs)
    scale: tuple[float, float] = (0.8, 1.25)  # zoom range about the centre
    translate: float = Field(default=0.1, ge=0.0, le=0.5)  # largest shift, as a share of the side
    min_visible: float = Field(default=0.4, ge=0.0, le=1.0)  # a box keeping less of its area is dropped


class DetectionConfig(Section):
    # predictions (danlu predict, serve, the report's pictures) keep boxes scoring at least this;
    # the metrics rank every box (COCO's way) and ignore it
    score_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    max_detections: int = Field(default=100, ge=1, le=1000)
    augment: AugmentConfig | None = Field(default_factory=AugmentConfig)
    # images drawn with their predicted and true boxes in the report
    report_images: int = Field(default=6, ge=0, le=64)


def _arch(recipe):
    if recipe.model.arch not in (None, *ARCHS):
        return ("model.arch", f"object detection builds {', '.join(ARCHS)} (or loads model.from), "
                              f"not '{recipe.model.arch}'")
    return None


def _scale(recipe):
    aug = recipe.detection.augment
    if aug is not None and not 0 < aug.scale[0] <= aug.scale[1] <= 4:
        return ("detection.augment.scale", f"[low, high] with 0 < low <= high <= 4, not {list(aug.scale)}")
    return None


def _defaults(recipe) -> None:
    recipe.data.columns.setdefault("objects", ["objects", "annotations"])


SPEC = TaskSpec(
    name="object-detection",
    kind="detection",
    task_class="danlu.tasks.object_detection.task:ObjectDetection",
    roles=("image", "objects"),
    input_roles=("image",),
    main_metric="map",
    greater_is_better=True,
    metrics=METRICS,
    summary="an image -> boxes around its objects, each with a class and a score (COCO JSON or YOLO labels)",
    starter="danlu.tasks.object_detection:starter.yaml",
    sample="danlu.tasks.object_detection.sample:sample",
    sections={"detection": DetectionConfig},
    defaults=_defaults,
    checks=(_arch, _scale),
    capabilities=Capabilities(),
)
SPECS = (SPEC,)
