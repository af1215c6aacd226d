"""The quality gate's rules for object annotations (an `objects` column: lists of {bbox, category}).

    box_outside    a box that sticks out of its image by more than coco.BOX_TOLERANCE pixels
    box_area       a box of zero or negative width or height
    category       an object with no category, or (validation/test) one no training image has: the model
                   cannot predict it, so it only costs recall
    no_objects     images without any object: kept as negatives, counted (never a failure)

The COCO and YOLO readers already refuse the first two with the annotation named; these rules hold for
objects read any other way (a jsonl or parquet table with an objects column). Duplicate images and
leakage between splits are the generic image rules' (the image fingerprints).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from danlu.data.coco import BOX_TOLERANCE
from danlu.data.report import Rule
from danlu.data.splits import Splits

_EXAMPLES = 5


def image_size(value) -> tuple[int, int] | None:
    """(width, height) of an image value (a path, an array, a PIL image, {bytes}), or None when unreadable;
    only the header is read."""
    import io

    from PIL import Image

    if isinstance(value, np.ndarray):
        return int(value.shape[1]), int(value.shape[0])
    if isinstance(value, Image.Image):
        return value.size
    try:
        if isinstance(value, dict):
            source = io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
        else:
            source = value
        with Image.open(source) as img:
            return img.size
    except Exception:  # noqa: BLE001 - an unreadable image is the unreadable rule's to report
        return None


def object_rules(splits: Splits) -> list[Rule]:
    frames = {s: f for s, f in splits.frames.items() if "objects" in f}
    known = {o.get("category") for objs in frames.get("train", pd.DataFrame({"objects": []}))["objects"]
             for o in _objects(objs)}
    outside, flat, unknown, empty = [], [], [], []
    first = {}
    for split, frame in frames.items():
        for row, value, objects in zip(frame["_row"], frame["image"], frame["objects"]):
            objects = _objects(objects)
            if not objects:
                empty.append(f"{split}:{int(row)}")
                continue
            size = image_size(value)
            for obj in objects:
                where = f"{split}:{int(row)}"
                box = obj.get("bbox")
                x, y, w, h = (float(v) for v in box) if _is_box(box) else (0.0, 0.0, 0.0, 0.0)
                if w <= 0 or h <= 0:
                    flat.append(where)
                    first.setdefault("flat", f"{where} box {box!r}")
                elif size and (x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or x + w > size[0] + BOX_TOLERANCE
                               or y + h > size[1] + BOX_TOLERANCE):
                    outside.append(where)
                    first.setdefault("outside", f"{where} box {box!r} in a {size[0]}x{size[1]} image")
                category = obj.get("category")
                if category is None or (split != "train" and category not in known):
                    unknown.append(where)
                    first.setdefault("unknown", f"{where} category {category!r}")
    total = sum(len(f) for f in frames.values()) or 1
    return [
        _rule("box_outside", outside, f"box(es) outside their image (beyond {BOX_TOLERANCE:g} px)", first.get("outside"),
              "every box lies within its image"),
        _rule("box_area", flat, "box(es) of zero or negative area", first.get("flat"), "every box has an area"),
        _rule("category", unknown, "object(s) with no category or one never seen in train (the model cannot "
              "predict it)", first.get("unknown"), "every object's category is a training category"),
        Rule("no_objects", True, len(empty) / total, None, len(empty), empty[:_EXAMPLES],
             f"{len(empty):,} image(s) ({len(empty) / total:.1%}) have no objects; kept as negatives"
             if empty else "every image has objects"),
    ]


def _rule(name: str, found: list[str], what: str, first: str | None, clean: str) -> Rule:
    message = f"{len(found):,} {what}; first: {first}" if found else clean
    return Rule(name, not found, len(found), 0, len(found), list(dict.fromkeys(found))[:_EXAMPLES], message)


def _objects(value) -> list[dict]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [o for o in value if isinstance(o, dict)]
    return []


def _is_box(box) -> bool:
    try:
        return len(box) == 4 and all(np.isfinite(float(v)) for v in box)
    except (TypeError, ValueError):
        return False
