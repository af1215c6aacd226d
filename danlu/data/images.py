"""Image sources (class folders, csv of paths, MNIST idx) and the per-image check the quality
gate runs: can it be decoded, and what are its bytes (for duplicates and leakage)."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
from pathlib import Path

import numpy as np
import pandas as pd

from danlu.data.paths import data_root, display_path, resolve_data_path
from danlu.data.rows import finish
from danlu.errors import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
SPLIT_FOLDERS = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                 "val": "validation", "dev": "validation", "test": "test", "testing": "test"}


def read_imagefolder(path: Path) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """`root/<class>/<file>`; or `root/<split>/<class>/<file>` when every subfolder is a split name."""
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs and all(p.name.lower() in SPLIT_FOLDERS for p in subdirs):
        return {SPLIT_FOLDERS[p.name.lower()]: _class_folders(p) for p in subdirs}
    return _class_folders(path)


def _class_folders(path: Path) -> pd.DataFrame:
    paths: list[str] = []
    labels: list[str] = []
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        # A corrupt .jpg stays in (the gate reports it); README.txt or .DS_Store do not.
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        paths.extend(str(f) for f in files)
        labels.extend([folder.name] * len(files))
    if not paths:
        raise DataError(f"{display_path(path)}: no images found; an image folder needs one subfolder per class "
                        f"holding {', '.join(sorted(IMAGE_EXTENSIONS))} files")
    return finish(pd.DataFrame({"image": paths, "label": labels}), range(1, len(paths) + 1), path)


def looks_like_image_paths(values: pd.Series) -> bool:
    present = values.dropna()
    return (not present.empty and isinstance(present.iloc[0], str)
            and Path(present.iloc[0]).suffix.lower() in IMAGE_EXTENSIONS)


def resolve_image_paths(values: pd.Series, csv_path: Path) -> pd.Series:
    """Paths in a csv are relative to the csv's folder, else to the data root. A path found in
    neither stays as the csv-relative one, so the gate can name the missing file."""
    bases = [csv_path.parent] + ([data_root()] if data_root() else [])

    def resolve(value):
        if not isinstance(value, str) or not value.strip():
            return value
        path = _expand(Path(value))
        if path.is_absolute():
            return str(path)
        for base in bases:
            if _exists(base / path):
                return str(base / path)
        return str(bases[0] / path)

    return values.map(resolve).astype("str")


def _expand(path: Path) -> Path:
    try:
        return path.expanduser()
    except RuntimeError:  # ~someone who is not a user here: the gate says the file is missing
        return path


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a NUL byte or an over-long name: no such file
        return False


def read_idx(mapping: dict, recipe_dir: Path | None) -> pd.DataFrame:
    images_path = resolve_data_path(str(mapping["images"]), recipe_dir)
    images = _read_idx_array(images_path)
    if images.ndim != 3:
        raise DataError(f"{display_path(images_path)}: expected an idx image file (n x rows x cols), "
                        f"got shape {images.shape}")
    frame = pd.DataFrame({"image": pd.Series(list(images), dtype=object)})
    if mapping.get("labels") is not None:
        labels_path = resolve_data_path(str(mapping["labels"]), recipe_dir)
        labels = _read_idx_array(labels_path)
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{display_path(labels_path)} has {len(labels)} labels (shape {labels.shape}) but "
                            f"{display_path(images_path)} has {len(images)} images; they must pair up one to one")
        frame["label"] = labels.astype(np.int64)
    return finish(frame, range(1, len(frame) + 1), images_path)


_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_idx_array(path: Path) -> np.ndarray:
    name = display_path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DataError(f"{name}: cannot read: {exc}") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES:
        raise DataError(f"{name}: not an idx file (bad magic number)")
    dims = raw[3]
    shape = struct.unpack(f">{dims}I", raw[4:4 + 4 * dims])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = raw[4 + 4 * dims:]
    if len(body) != expected:
        raise DataError(f"{name}: header says shape {shape} ({expected} bytes) but the file holds {len(body)} bytes")
    if shape[0] == 0:
        raise DataError(f"{name} is empty")
    # copy(): frombuffer is read-only, and torch warns on (and cannot write to) such arrays.
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def image_fingerprint(value) -> tuple[str | None, str | None]:
    """(hash of the image's bytes, None) when it decodes, (None, why) when it does not.

    Accepts what the readers produce: a path, a numpy array (idx), a PIL image or a
    {bytes, path} dict (Hugging Face datasets)."""
    from PIL import Image

    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None, "no image"
    if isinstance(value, np.ndarray):
        if value.ndim not in (2, 3) or value.size == 0:
            return None, f"array of shape {value.shape} is not an image"
        return _digest(np.ascontiguousarray(value).tobytes() + str(value.shape).encode()), None
    if isinstance(value, Image.Image):
        return _digest(value.tobytes() + str(value.size).encode()), None
    if isinstance(value, dict):
        data = value.get("bytes")
        if data is None and value.get("path"):
            value = value["path"]
        elif data is None:
            return None, "no image"
    if isinstance(value, (str, Path)):
        if not str(value).strip():
            return None, "no image"
        try:
            data = Path(value).read_bytes()
        except FileNotFoundError:
            return None, "no such file"
        except OSError as exc:
            return None, f"cannot read ({exc.strerror or exc})"
        except ValueError:  # a NUL byte in the path
            return None, "not a file path"
    elif not isinstance(value, dict):
        return None, f"a {type(value).__name__} is not an image"
    why = decode_error(data)
    return (None, why) if why else (_digest(data), None)


def decode_error(data) -> str | None:
    """Why the bytes are no image training could use, or None. Every pixel is decoded, as training
    will: a header can be fine in front of a truncated body."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels, limit = image.width * image.height, Image.MAX_IMAGE_PIXELS
            # PIL only warns between its limit and twice it; such an image is still a bomb to decode.
            if limit and pixels > limit:
                return _bomb(pixels, limit)
            image.load()
    except Image.DecompressionBombError:
        return _bomb(None, Image.MAX_IMAGE_PIXELS)
    # PIL's decoders answer bad bytes with many exception types (OSError, SyntaxError, struct.error,
    # EOFError, IndexError...): whichever it is, the image cannot be used.
    except Exception as exc:
        return str(exc).split(" '<_io")[0] or type(exc).__name__
    return None


def _bomb(pixels: int | None, limit: int) -> str:
    size = f"{pixels:,} pixels, " if pixels else ""
    return f"{size}more than PIL's limit of {limit:,} (PIL.Image.MAX_IMAGE_PIXELS): a decompression bomb"


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()
