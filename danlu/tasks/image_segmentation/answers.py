"""A predicted mask as the JSON predict and serve answer: the class ids as a greyscale PNG in base64 (pixel
value = class id, the image's own size), each present class's share of the pixels, and each class's
region as COCO RLE (pycocotools' compressed counts), which COCO tools read directly."""

from __future__ import annotations

import base64
import io

import numpy as np
from pydantic import BaseModel


class ClassRegion(BaseModel):
    label: str
    id: int
    size: list[int]  # [height, width], as COCO writes it
    counts: str


class MaskPrediction(BaseModel):
    mask_png: str  # base64 PNG, mode L: each pixel's class id
    width: int
    height: int
    labels: dict[str, str]  # class id -> name, for reading the PNG's values
    shares: dict[str, float]  # name -> share of the pixels, the classes present only
    regions: list[ClassRegion]


def mask_answer(mask: np.ndarray, classes: list[str]) -> dict:
    from PIL import Image
    from pycocotools import mask as coco_mask

    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8), mode="L").save(buffer, format="PNG")
    counts = np.bincount(mask.reshape(-1), minlength=len(classes))
    present = [int(i) for i in np.flatnonzero(counts)]
    regions = []
    for i in present:
        rle = coco_mask.encode(np.asfortranarray(mask == i, dtype=np.uint8))
        regions.append({"label": classes[i], "id": i, "size": [int(s) for s in rle["size"]],
                        "counts": rle["counts"].decode("ascii")})
    return {"mask_png": base64.b64encode(buffer.getvalue()).decode("ascii"), "width": int(mask.shape[1]),
            "height": int(mask.shape[0]), "labels": {str(i): name for i, name in enumerate(classes)},
            "shares": {classes[i]: round(float(counts[i] / mask.size), 6) for i in present}, "regions": regions}


def decode_mask_png(value: str) -> np.ndarray:
    """A mask_png back to its (H, W) class ids (for clients and tests)."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(value))))
