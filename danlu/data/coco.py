"""Object annotations: COCO instances JSON and YOLO text labels -> one row per image, and semantic masks.

Both readers give the same columns: `image` (an absolute path), `width`, `height`, `objects` (a list of
{bbox [x, y, w, h] in pixels, category, category_id, segmentation, iscrowd, id}) and `_row`/`_source`.
Annotations that cannot be right (a box outside its image, a box of no area, an unknown category, an
image id that names no image) stop the read with the file and the annotation named: a model trained on
them would learn the mistake. An image without annotations stays (objects = []): it is a negative, and
the quality gate counts them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from danlu.data.images import IMAGE_EXTENSIONS
from danlu.data.paths import display_path
from danlu.data.rows import finish
from danlu.errors import DataError

BOX_TOLERANCE = 1.0  # pixels a box may stick out of its image (COCO's own boxes round outwards)
COLUMNS = ("image", "width", "height", "objects")


def is_coco(content) -> bool:
    """A parsed JSON value that is a COCO annotations file (what the generic reader detects)."""
    return isinstance(content, dict) and "images" in content and "annotations" in content


def load_json(json_path: Path) -> dict:
    name = display_path(json_path)
    try:
        text = Path(json_path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{name}: cannot read: {exc}") from None
    try:
        content = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not is_coco(content):
        raise DataError(f"{name}: not a COCO annotations file (needs the keys 'images' and 'annotations')")
    return content


def categories(json_path: Path) -> list[str]:
    """The category names in COCO id order."""
    return [name for _, name in sorted(_category_names(load_json(json_path), display_path(json_path)).items())]


def read_coco(json_path: Path, images_dir: Path | None = None) -> pd.DataFrame:
    json_path = Path(json_path)
    return frame_from_coco(load_json(json_path), json_path, images_dir)


def frame_from_coco(content: dict, json_path: Path, images_dir: Path | None = None) -> pd.DataFrame:
    """The rows of a parsed COCO file; `json_path` names it in messages and anchors relative image paths."""
    name = display_path(json_path)
    names = _category_names(content, name)
    records = content["images"]
    if not isinstance(records, list) or not isinstance(content["annotations"], list):
        raise DataError(f"{name}: 'images' and 'annotations' must be lists")
    bases = _image_bases(Path(json_path).resolve(), images_dir)
    by_id: dict[object, dict] = {}
    rows = []
    for position, record in enumerate(records, start=1):
        if not isinstance(record, dict) or not {"id", "file_name", "width", "height"} <= set(record):
            raise DataError(f"{name}: image record {position} needs id, file_name, width and height")
        if record["id"] in by_id:
            raise DataError(f"{name}: image id {record['id']} is used by two image records")
        row = {"image": _find_image(str(record["file_name"]), bases), "width": int(record["width"]),
               "height": int(record["height"]), "objects": []}
        by_id[record["id"]] = row
        rows.append(row)
    for ann in content["annotations"]:
        if not isinstance(ann, dict):
            raise DataError(f"{name}: an annotation is a {type(ann).__name__}, not an object")
        where = f"{name}: annotation {ann.get('id', '(no id)')}"
        row = by_id.get(ann.get("image_id"))
        if row is None:
            raise DataError(f"{where} points at image_id {ann.get('image_id')}, which is not in 'images'")
        category_id = ann.get("category_id")
        if category_id not in names:
            raise DataError(f"{where} has category_id {category_id}, which is not in 'categories' "
                            f"(ids: {', '.join(map(str, sorted(names)))})")
        bbox = check_box(ann.get("bbox"), row["width"], row["height"], where)
        row["objects"].append({"bbox": bbox, "category": names[category_id], "category_id": int(category_id),
                               "segmentation": ann.get("segmentation") or None,
                               "iscrowd": int(ann.get("iscrowd", 0)), "id": ann.get("id")})
    return finish(pd.DataFrame(rows, columns=list(COLUMNS)), range(1, len(rows) + 1), json_path)


def check_box(bbox, width: int, height: int, where: str) -> list[float]:
    """[x, y, w, h] as floats, or a DataError saying what is wrong with it."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise DataError(f"{where}: bbox must be [x, y, width, height], got {bbox!r}")
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise DataError(f"{where}: bbox must be four numbers, got {bbox!r}") from None
    if not all(np.isfinite([x, y, w, h])):
        raise DataError(f"{where}: bbox {bbox!r} is not finite")
    if w <= 0 or h <= 0:
        raise DataError(f"{where}: bbox {bbox!r} has no area (width and height must be > 0)")
    t = BOX_TOLERANCE
    if x < -t or y < -t or x + w > width + t or y + h > height + t:
        raise DataError(f"{where}: bbox {bbox!r} lies outside its {width}x{height} image")
    return [x, y, w, h]


def _category_names(content: dict, name: str) -> dict[int, str]:
    cats = content.get("categories")
    if not isinstance(cats, list) or not cats:
        raise DataError(f"{name}: no 'categories' list; COCO files name their categories")
    out: dict[int, str] = {}
    for cat in cats:
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise DataError(f"{name}: every category needs an id and a name, got {cat!r}")
        out[int(cat["id"])] = str(cat["name"])
    return out


def _image_bases(json_path: Path, images_dir: Path | None) -> list[Path]:
    folder = json_path.parent
    beside = folder.parent / "images"
    default = images_dir if images_dir is not None else (beside if beside.is_dir() else folder)
    out: list[Path] = []
    for base in (Path(default), folder, folder.parent):
        if base not in out:
            out.append(base)
    return out


def _find_image(file_name: str, bases: list[Path]) -> str:
    """The first base holding `file_name`; else the first base's path, so the gate names the missing file."""
    for base in bases:
        for candidate in (base / file_name, base / Path(file_name).name):
            if candidate.is_file():
                return str(candidate.resolve())
    return str((bases[0] / file_name).resolve())


# -- YOLO ------------------------------------------------------------------------------------
def read_yolo(folder: Path, names: list[str] | None = None) -> pd.DataFrame:
    """`folder/images/*` with `folder/labels/<stem>.txt` lines "class cx cy w h" (normalised to [0, 1]).
    Class names: `names`, else classes.txt or data.yaml's `names`, else the class numbers."""
    from PIL import Image

    folder = Path(folder)
    images_dir, labels_dir = folder / "images", folder / "labels"
    if not images_dir.is_dir():
        raise DataError(f"{display_path(folder)}: a YOLO folder needs images/ (and labels/ beside it)")
    names = names if names is not None else yolo_names(folder)
    files = sorted(p for p in images_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"{display_path(images_dir)}: no images found")
    rows = []
    for path in files:
        try:
            with Image.open(path) as img:
                width, height = img.size
        except Exception as exc:  # PIL raises many types for a broken file
            raise DataError(f"{display_path(path)}: cannot read the image's size: {exc}") from None
        label = labels_dir / path.relative_to(images_dir).with_suffix(".txt")
        objects = _yolo_objects(label, width, height, names) if label.is_file() else []
        rows.append({"image": str(path.resolve()), "width": width, "height": height, "objects": objects})
    return finish(pd.DataFrame(rows, columns=list(COLUMNS)), range(1, len(rows) + 1), folder)


def yolo_names(folder: Path) -> list[str] | None:
    classes = folder / "classes.txt"
    if classes.is_file():
        return [line.strip() for line in classes.read_text(encoding="utf-8").splitlines() if line.strip()]
    for yaml_name in ("data.yaml", "dataset.yaml"):
        path = folder / yaml_name
        if path.is_file():
            import yaml

            try:
                found = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("names")
            except yaml.YAMLError as exc:
                raise DataError(f"{display_path(path)}: invalid YAML: {exc}") from None
            if isinstance(found, dict):
                return [str(found[k]) for k in sorted(found)]
            if isinstance(found, list):
                return [str(v) for v in found]
    return None


def _yolo_objects(label: Path, width: int, height: int, names: list[str] | None) -> list[dict]:
    objects = []
    for number, line in enumerate(label.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{display_path(label)} line {number}"
        parts = line.split()
        try:
            cls, cx, cy, w, h = int(parts[0]), *(float(v) for v in parts[1:5])
        except (ValueError, IndexError):
            raise DataError(f"{where}: expected 'class cx cy w h', got {line.strip()!r}") from None
        if cls < 0 or (names is not None and cls >= len(names)):
            raise DataError(f"{where}: class {cls} is not one of the {len(names or [])} names")
        bbox = check_box([(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height], width, height, where)
        objects.append({"bbox": bbox, "category": names[cls] if names else str(cls), "category_id": cls,
                        "segmentation": None, "iscrowd": 0, "id": number})
    return objects


def looks_like_yolo(folder: Path) -> bool:
    labels = folder / "labels"
    return (folder / "images").is_dir() and labels.is_dir() and any(labels.rglob("*.txt"))


# -- masks -----------------------------------------------------------------------------------
def object_mask(segmentation, width: int, height: int) -> np.ndarray | None:
    """(H, W) uint8 0/1 of one object's polygons or RLE (pycocotools), or None when it has neither."""
    from pycocotools import mask as mask_utils

    if not segmentation:
        return None
    if isinstance(segmentation, list):  # polygons [[x1, y1, x2, y2, ...], ...]
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict):
        rle = segmentation
    else:
        raise DataError(f"a segmentation is polygons or RLE, not a {type(segmentation).__name__}")
    out = mask_utils.decode(rle)
    return out[..., 0] if out.ndim == 3 else out


def semantic_mask(objects: list[dict], width: int, height: int, class_index: dict[str, int]) -> np.ndarray:
    """(H, W) uint8: 0 background, class_index[category] (>= 1) where an object lies; later objects paint
    over earlier ones; an object without a segmentation paints nothing."""
    out = np.zeros((height, width), dtype=np.uint8)
    for obj in objects or []:
        mask = object_mask(obj.get("segmentation"), width, height)
        if mask is not None:
            out[mask.astype(bool)] = class_index[obj["category"]]
    return out
