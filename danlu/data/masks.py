"""Segmentation masks stored as images: one class id per pixel (a greyscale or palette PNG), read from a
folder pair `root/images/*` + `root/masks/*` matched by file stem, or from a table's mask column."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from danlu.data.images import IMAGE_EXTENSIONS
from danlu.data.paths import display_path
from danlu.data.rows import finish
from danlu.errors import DataError

IMAGES, MASKS = "images", "masks"


def is_mask_folder(path: Path) -> bool:
    return (path / IMAGES).is_dir() and (path / MASKS).is_dir()


def read_mask_folder(path: Path) -> pd.DataFrame:
    """One row per image of root/images with the mask of the same stem in root/masks (missing: empty,
    for the quality gate to name)."""
    images = _files(path / IMAGES)
    if not images:
        raise DataError(f"{display_path(path / IMAGES)}: no images found ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    masks = {}
    for mask in _files(path / MASKS):
        if mask.stem in masks:
            raise DataError(f"{display_path(path / MASKS)}: two masks for the stem '{mask.stem}': "
                            f"{masks[mask.stem].name} and {mask.name}")
        masks[mask.stem] = mask
    frame = pd.DataFrame({"image": [str(p) for p in images],
                          "mask": [str(masks[p.stem]) if p.stem in masks else None for p in images]})
    return finish(frame, range(1, len(frame) + 1), path)


def _files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)


def open_mask(value) -> np.ndarray:
    """A mask (a path, an array, a PIL image, {bytes, path}) -> (H, W) uint8 class ids. A colour mask is
    refused unless its three channels agree: colours are no class ids."""
    from PIL import Image

    if isinstance(value, np.ndarray):
        arr = value
    else:
        if isinstance(value, Image.Image):
            img = value
        elif isinstance(value, dict):
            img = Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else Image.open(value["path"])
        else:
            img = Image.open(value)
        img.load()
        arr = np.asarray(img)  # a palette ("P") image gives its indices, which are the class ids
    if arr.ndim == 3:
        if arr.shape[2] >= 3 and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
            arr = arr[..., 0]
        else:
            raise ValueError(f"a colour mask ({arr.shape[2]} channels that differ); a mask holds one class id "
                             "per pixel: save it as a greyscale or palette PNG")
    if arr.ndim != 2:
        raise ValueError(f"an array of shape {arr.shape} is not a mask")
    if arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"class ids {int(arr.min())}..{int(arr.max())} do not fit 0-255")
        arr = arr.astype(np.uint8)
    return arr


def resolve_mask_paths(frame: pd.DataFrame) -> pd.Series:
    """A table's mask paths, relative to the table's own folder like its image paths (each row to the
    file it came from, when several tables are stacked)."""
    from danlu.data.images import looks_like_image_paths, resolve_image_paths

    masks = frame["mask"]
    if "_source" not in frame or not len(frame) or not looks_like_image_paths(masks):
        return masks
    out = masks.copy()
    for source, rows in frame.groupby("_source").groups.items():
        if not Path(str(source)).is_dir():
            out.loc[rows] = resolve_image_paths(masks.loc[rows], Path(str(source)))
    return out.where(masks.notna(), None)
