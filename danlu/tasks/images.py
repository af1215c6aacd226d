"""What the image tasks (classification, detection, segmentation, generation) share about their input: an
image value in any of the forms the data stage hands over, the side it is read at, a path or a request body
as one row to predict, and a batch of pixel arrays."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from danlu.data.objects_quality import image_size
from danlu.errors import DataError
from danlu.tasks.uploads import ImageInput

SIZE_SAMPLE = 200  # training images whose sides choose the input side when the recipe gives none


def as_pil(value) -> Image.Image:
    """A path, an array, a PIL image or a hub record ({bytes, path}) -> a PIL image (lazily decoded)."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, (str, Path)):
        return Image.open(value)
    if isinstance(value, dict):  # the datasets library's Image feature, undecoded
        return Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else Image.open(value["path"])
    return Image.fromarray(np.asarray(value))


def open_image(value, mode: str, size: int) -> Image.Image:
    """An image value -> a PIL image in `mode`, size x size; a broken one is a DataError naming it."""
    try:
        img = as_pil(value).convert(mode)
    except Exception as exc:  # PIL raises many types for a broken file
        where = value if isinstance(value, (str, Path)) else f"({type(value).__name__})"
        raise DataError(f"cannot read image {where}: {exc}") from None
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return img


def is_grey(img: Image.Image) -> bool:
    arr = np.asarray(img, dtype=np.int16)
    return bool(np.abs(arr[..., 0] - arr[..., 1]).max() <= 2 and np.abs(arr[..., 1] - arr[..., 2]).max() <= 2)


def median_side(images: pd.Series, side_range: tuple[int, int]) -> tuple[int, int, int]:
    """(side, median, images read): the median longer side of a sample of training images, clamped to
    `side_range` so that a 1x1 or 6000x6000 outlier does not decide. Unreadable images are skipped: they are
    the quality gate's to report."""
    sides = [max(s) for s in (image_size(v) for v in images.head(SIZE_SAMPLE)) if s]
    if not sides:
        raise DataError("no training image could be read to choose the input size; set model.image_size")
    median = int(np.median(sides))
    return int(min(max(median, side_range[0]), side_range[1])), median, len(sides)


def collate_pixels(items: list[dict]) -> dict:
    """A batch of examples {pixel_values[, labels: a class id]}."""
    out = {"pixel_values": torch.as_tensor(np.stack([b["pixel_values"] for b in items]))}
    if "labels" in items[0]:
        out["labels"] = torch.as_tensor(np.asarray([b["labels"] for b in items], dtype=np.int64))
    return out


class ImageInputs:
    """`danlu predict RUN image.png` and POST /v1/predict {"image": "<base64>"} for a task whose rows hold an
    `image`; listed before Task in a task's bases."""

    def frame_from_value(self, value: str) -> pd.DataFrame:
        if not Path(value).is_file():
            raise DataError(f"{value}: no such image file")
        return pd.DataFrame({"image": [value]})

    def request_item(self):
        return ImageInput

    def rows_from_request(self, inputs: list) -> list[dict]:
        return [{"image": {"bytes": value.image}} for value in inputs]  # as_pil reads this form
