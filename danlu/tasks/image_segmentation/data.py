"""The segmentation data stage: images with their masks read, split, and through the quality gate.

A split's source is one of:
  - COCO instances JSON (data.format: coco, danlu.data.coco): polygons and RLE drawn into a
    semantic mask per image;
  - a table (csv, tsv, jsonl, parquet) with an image and a mask column (paths relative to the table,
    other names through data.columns);
  - a folder `root/images` + `root/masks`, a mask per image matched by file stem (danlu.data.masks).
Splits: data.train / validation / test, or one data.source cut by data.split (shares or counts, seed).

The generic gate checks the images (unreadable, duplicated, held-out images also in train); these
rules check the masks, each naming its files:
  mask_unreadable  a mask that is missing or cannot be decoded (dropped; fails beyond quality.max_unreadable)
  mask_size        a mask whose size differs from its image's (dropped; fails on any)
  mask_values      mask values, or annotation categories, that are no class of the training data (the
                   pixels are left out of training and measuring (mask values) or drawn as background
                   (categories); fails on any)
and the pixel share of each class per split is the report's label distribution.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from danlu.data import QualityReport, Rule, Splits, check_quality
from danlu.data.config import SPLIT_NAMES
from danlu.data.masks import is_mask_folder, read_mask_folder, resolve_mask_paths
from danlu.data.paths import display_path, resolve_data_path
from danlu.data.sources import read_source
from danlu.data.splits import carve_pool, take_rows
from danlu.errors import DataError
from danlu.tasks.chat.data import sample
from danlu.tasks.image_segmentation.classes import class_names, row_mask
from danlu.tasks.image_segmentation.metrics import IGNORE

EXAMPLES = 5


def load(recipe) -> tuple[Splits, QualityReport]:
    data = recipe.data
    frames = {name: segmentation_frame(frame, data) for name, frame in read_splits(data, recipe.base_dir).items()}
    frames, notes = carve_pool(frames, data.split, "images", take_rows)
    for name, cap in (data.limit or {}).items():
        if name in frames and len(frames[name]) > cap:
            notes.append(f"{name}: {cap:,} images sampled from {len(frames[name]):,} (data.limit.{name}, "
                         f"seed {data.split.seed})")
            frames[name] = sample(frames[name], cap, data.split.seed)
    splits = Splits({name: frames[name] for name in SPLIT_NAMES if name in frames}, notes=notes)
    read = splits.sizes()
    cfg = recipe.segmentation
    classes = class_names(splits.frames["train"], cfg.classes, cfg.background)
    rules, pixels = mask_rules(splits, classes, recipe.quality.max_unreadable)
    report = check_quality(splits, recipe.quality, ["image"], classification=False)
    for split, counts in report.counts.items():
        counts["read"] = read.get(split, counts["read"])
    report.rules[1:1] = rules  # after the image rules, before duplicates and leakage
    report.labels = pixels
    report.notes.append(f"{len(classes)} classes (pixel counts per split under the label distribution): "
                        + ", ".join(f"{i}={name!r}" for i, name in enumerate(classes[:30]))
                        + (" ..." if len(classes) > 30 else ""))
    return splits, report


# -- reading --------------------------------------------------------------------------
def read_splits(data, base_dir) -> dict[str, pd.DataFrame]:
    """The frames of data.source (or data.train) and of any split given on its own."""
    explicit = data.explicit_splits()
    pool = explicit.pop("train", None) or data.source
    if pool is None:
        raise DataError("no training data: set data.source (split automatically) or data.train")
    frames = {"train": read_one(pool, data, base_dir)}
    for name, source in explicit.items():
        frames[name] = read_one(source, data, base_dir)
    return frames


def read_one(source, data, base_dir) -> pd.DataFrame:
    if isinstance(source, str) and not source.startswith(("builtin:", "hub:")):
        path = resolve_data_path(source, base_dir)
        if path.is_dir() and is_mask_folder(path):
            return read_mask_folder(path)
    got = read_source(source, data, base_dir)
    if isinstance(got, dict):
        raise DataError(f"{source}: holds splits ({', '.join(got)}); give each split's images and masks as "
                        "data.train / data.validation / data.test")
    return got


def segmentation_frame(frame: pd.DataFrame, data) -> pd.DataFrame:
    """image + mask (or image + objects, width, height), _row, _source."""
    image = _column(frame, data, "image")
    if "objects" in frame.columns:
        keep = {image: "image", "objects": "objects", "width": "width", "height": "height"}
    else:
        keep = {image: "image", _column(frame, data, "mask"): "mask"}
    out = frame[[*keep, *(c for c in ("_row", "_source") if c in frame)]].rename(columns=keep)
    if "mask" in out:
        out = out.assign(mask=resolve_mask_paths(out))
    return out.reset_index(drop=True)


def _column(frame: pd.DataFrame, data, role: str) -> str:
    found = next((c for c in data.role_columns(role) if c in frame.columns), None)
    if found is None:
        columns = ", ".join(str(c) for c in frame.columns if not str(c).startswith("_"))
        where = display_path(frame["_source"].iloc[0]) if "_source" in frame and len(frame) else "the data"
        raise DataError(f"{where}: no column {' or '.join(map(repr, data.role_columns(role)))} for the {role}; "
                        f"columns are: {columns}; set data.columns.{role}, or give COCO annotations "
                        "(data.format: coco) or an images/ + masks/ folder")
    return found


# -- the mask rules -------------------------------------------------------------------
def mask_rules(splits: Splits, classes: list[str], max_unreadable: int) -> tuple[list[Rule], dict]:
    """The three mask rules (dropping the rows they name) and each split's pixels per class."""
    found = {"mask_unreadable": [], "mask_size": [], "mask_values": []}
    first = {}
    pixels = {}
    for split, frame in list(splits.frames.items()):
        with ThreadPoolExecutor(max_workers=4) as pool:
            checked = list(pool.map(lambda row: check_row(row, classes), (r for _, r in frame.iterrows())))
        counts = np.zeros(len(classes), dtype=np.int64)
        for rule in found:
            bad = np.array([c[0] == rule for c in checked], dtype=bool)
            if bad.any():
                first.setdefault(rule, f"{split}:{int(frame['_row'].iloc[int(np.flatnonzero(bad)[0])])} "
                                       f"{checked[int(np.flatnonzero(bad)[0])][1]}")
                found[rule].append((split, frame.loc[bad, "_row"].tolist()))
        for problem, _, row_counts in checked:
            if row_counts is not None and problem in (None, "mask_values"):
                counts += row_counts
        pixels[split] = {name: int(n) for name, n in zip(classes, counts)}
        dropped = np.array([c[0] in ("mask_unreadable", "mask_size") for c in checked], dtype=bool)
        for reason in ("mask_unreadable", "mask_size"):
            splits.drop(split, dropped & np.array([c[0] == reason for c in checked], dtype=bool),
                        reason.replace("_", " "))
    rules = []
    for name, threshold, fine in (("mask_unreadable", max_unreadable, "every mask opens"),
                                  ("mask_size", 0, "every mask has its image's size"),
                                  ("mask_values", 0, f"every mask value is one of the {len(classes)} classes")):
        count = sum(len(rows) for _, rows in found[name])
        examples = [f"{s}:{int(r)}" for s, rows in found[name] for r in rows][:EXAMPLES]
        message = f"{count:,} image(s); first: {first[name]}" if count else fine
        rules.append(Rule(name, count <= threshold, count, threshold, count, examples, message))
    return rules, pixels


def check_row(row, classes: list[str]) -> tuple[str | None, str, np.ndarray | None]:
    """(the rule the row breaks or None, what is wrong, its pixels per class)."""
    objects = "objects" in row.index
    what = _name(row["mask"]) if not objects else f"the annotations of {_name(row['image'])} in {_name(row['_source'])}"
    try:
        mask, unknown = row_mask(row, classes)
    except Exception as exc:  # noqa: BLE001 - PIL and pycocotools answer bad bytes with many types
        if not objects and (row["mask"] is None or (isinstance(row["mask"], float) and np.isnan(row["mask"]))):
            return "mask_unreadable", f"no mask for {_name(row['image'])}", None
        return "mask_unreadable", f"{what}: {str(exc).splitlines()[0][:200] or type(exc).__name__}", None
    size = _image_size(row["image"])
    if size is not None and size != (mask.shape[1], mask.shape[0]):
        return "mask_size", (f"{what} is {mask.shape[1]}x{mask.shape[0]} but its image {_name(row['image'])} is "
                             f"{size[0]}x{size[1]}"), None
    values = np.bincount(mask.reshape(-1), minlength=256)
    counts = values[:len(classes)]
    stray = [int(v) for v in np.flatnonzero(values) if v >= len(classes) and v != IGNORE]
    if stray:
        return "mask_values", (f"{what} holds values {', '.join(map(str, stray[:8]))}, which are no class "
                               f"(classes 0-{len(classes) - 1})"), counts
    if unknown:
        return "mask_values", f"{what}: categories {', '.join(unknown[:8])} are no class of the training data", counts
    return None, "", counts


def _image_size(value) -> tuple[int, int] | None:
    """(width, height), or None when the image cannot be opened (the generic gate names it)."""
    if isinstance(value, np.ndarray):
        return (value.shape[1], value.shape[0]) if value.ndim >= 2 else None
    from PIL import Image

    try:
        with Image.open(value if not isinstance(value, dict) else value["path"]) as img:
            return img.size
    except Exception:  # noqa: BLE001
        return None


def _name(value) -> str:
    if isinstance(value, (str, Path)):
        return display_path(value)
    return f"(a {type(value).__name__})"
