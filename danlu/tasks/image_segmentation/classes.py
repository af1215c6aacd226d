"""What a row's mask is and which classes it names, for the data stage and the task alike.

A row holds its mask one of two ways: `mask`, an image of class ids (a PNG path, an array), or
`objects`, COCO annotations (polygons or RLE, with `width` and `height`), drawn into a semantic mask
by danlu.data.coco.semantic_mask. The classes, by id (0 first, the background):
  - segmentation.classes when the recipe names them (mask value i is classes[i]; with objects, the
    names are COCO category names);
  - objects: the background, then the categories the COCO files declare, in category-id order (YOLO
    labels: those of the training annotations);
  - masks: 0 .. the largest value in the training masks, 0 named segmentation.background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from danlu.data.masks import open_mask
from danlu.tasks.image_segmentation.metrics import IGNORE


def uses_objects(frame: pd.DataFrame) -> bool:
    return "objects" in frame.columns


def class_names(train: pd.DataFrame, given: list[str] | None, background: str) -> list[str]:
    if given:
        return list(given)
    if uses_objects(train):
        return [background, *_declared_categories(train)]
    top = 0
    for value in train["mask"]:
        try:
            values = np.unique(open_mask(value))
        except Exception:  # noqa: BLE001 - an unreadable mask is the quality gate's to report
            continue
        values = values[values != IGNORE]
        top = max(top, int(values.max()) if values.size else 0)
    return [background, *(str(i) for i in range(1, top + 1))]


def _declared_categories(train: pd.DataFrame) -> list[str]:
    """The categories the COCO files declare, in id order (a category no training image shows is still a
    class, so a held-out image of it is measured, not refused); else those of the training objects."""
    from danlu.data.coco import categories

    names: dict[str, None] = {}
    for source in dict.fromkeys(train["_source"]) if "_source" in train else ():
        if str(source).lower().endswith(".json"):
            names.update(dict.fromkeys(categories(Path(source))))
    if names:
        return list(names)
    seen: dict[str, int] = {}
    for objects in train["objects"]:
        for obj in objects if isinstance(objects, list) else ():
            seen.setdefault(str(obj["category"]), int(obj.get("category_id") or 0))
    return sorted(seen, key=lambda name: (seen[name], name))


def row_mask(row, classes: list[str]) -> tuple[np.ndarray, list[str]]:
    """The row's (H, W) uint8 class-id mask and the categories of its objects that are no class (those
    objects are left out, their pixels background)."""
    if "objects" in row and isinstance(row["objects"], list):
        from danlu.data.coco import semantic_mask

        index = {name: i for i, name in enumerate(classes)}
        objects = [o for o in row["objects"] if str(o["category"]) in index]
        unknown = sorted({str(o["category"]) for o in row["objects"] if str(o["category"]) not in index})
        return semantic_mask(objects, int(row["width"]), int(row["height"]), index), unknown
    return open_mask(row["mask"]), []
