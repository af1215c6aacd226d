"""Video sources and reading one clip: class folders of clips (video files, or folders of frame images),
tables of clip paths, and the decode the quality gate and the video task share (PyAV).

A clip is a video file (.mp4, .avi, .mkv, .webm, .mov ...), a folder of frame images (read in name
order), uploaded bytes ({bytes}), or an array of frames (T, H, W[, 3]) uint8.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd

from danlu.data.images import IMAGE_EXTENSIONS, SPLIT_FOLDERS
from danlu.data.paths import display_path
from danlu.data.rows import finish
from danlu.errors import DataError

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ogv", ".wmv", ".flv",
                    ".3gp", ".ts"}
_LOOK = 50  # names looked at per folder when telling what a folder holds


@dataclass(frozen=True)
class ClipFacts:
    digest: str  # of the decoded frames: the same clip in two containers is one clip
    frames: int
    seconds: float
    fps: float
    width: int
    height: int
    codec: str


# -- what a folder holds ---------------------------------------------------------------
def _is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file()


def _is_frame_folder(path: Path) -> bool:
    """A folder whose first entries are image files: one clip's frames."""
    if not path.is_dir():
        return False
    names = list(islice(path.iterdir(), _LOOK))
    return bool(names) and all(f.suffix.lower() in IMAGE_EXTENSIONS for f in names if f.is_file()) and \
        any(f.suffix.lower() in IMAGE_EXTENSIONS for f in names)


def _class_level(path: Path) -> list[Path]:
    """The folders that hold the class folders: the root, or each split folder (train/, test/)."""
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs and all(p.name.lower() in SPLIT_FOLDERS for p in subdirs):
        return subdirs
    return [path]


def has_video(path: Path) -> bool:
    """`root/<class>/<clip>` or `root/<split>/<class>/<clip>` where the clips are video files or folders of
    frame images (an image folder holds images one level lower than a frame folder does). The first names
    of each folder decide, so a folder of 50,000 images is not read through."""
    for level in _class_level(path):
        for folder in islice((p for p in level.iterdir() if p.is_dir()), _LOOK):
            for child in islice(folder.iterdir(), _LOOK):
                if _is_video_file(child) or _is_frame_folder(child):
                    return True
    return False


def read_videofolder(path: Path) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """(video, label) rows from `root/<class>/<clip>`, or a frame per split from `root/<split>/<class>/<clip>`."""
    levels = _class_level(path)
    if levels == [path]:
        return _class_folders(path)
    return {SPLIT_FOLDERS[p.name.lower()]: _class_folders(p) for p in levels}


def _class_folders(path: Path) -> pd.DataFrame:
    paths, labels = [], []
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        # A corrupt .mp4 stays in (the gate names it); README.txt or .DS_Store do not.
        clips = sorted(c for c in folder.iterdir() if not c.name.startswith(".")
                       and (_is_video_file(c) or _is_frame_folder(c)))
        paths.extend(str(c) for c in clips)
        labels.extend([folder.name] * len(clips))
    if not paths:
        raise DataError(f"{display_path(path)}: no clips found; a video folder holds one subfolder per class with "
                        f"video files ({', '.join(sorted(VIDEO_EXTENSIONS))}) or folders of frame images")
    return finish(pd.DataFrame({"video": paths, "label": labels}), range(1, len(paths) + 1), path)


def looks_like_video_paths(values: pd.Series, table_folder: Path) -> bool:
    """Video files by their extension, or frame folders that exist (beside the table naming them)."""
    present = values.dropna()
    if present.empty or not isinstance(present.iloc[0], str):
        return False
    first = Path(present.iloc[0])
    return first.suffix.lower() in VIDEO_EXTENSIONS or _is_frame_folder(table_folder / first)


# -- reading one clip ------------------------------------------------------------------
def _name(value) -> str:
    if isinstance(value, dict):
        return value.get("path") or "the uploaded video"
    if isinstance(value, (bytes, bytearray)):
        return "the uploaded video"
    return display_path(value) if isinstance(value, (str, Path)) else f"({type(value).__name__})"


def decode(value) -> tuple[list[np.ndarray], float, str]:
    """(every frame as (H, W, 3) uint8, frames per second, codec); a DataError naming the clip otherwise."""
    name = _name(value)
    if isinstance(value, np.ndarray):
        return list(_as_rgb(value)), 0.0, "array"
    if isinstance(value, dict):
        value = value["bytes"] if value.get("bytes") else value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return _decode_container(io.BytesIO(value), name)
    if not isinstance(value, (str, Path)) or not str(value).strip():
        raise DataError(f"no video: expected a clip's path or bytes, got {type(value).__name__}")
    path = Path(value)
    if path.is_dir():
        return _read_frame_folder(path, name), 0.0, "images"
    if not path.exists():
        raise DataError(f"{name}: no such video file")
    if path.stat().st_size == 0:
        raise DataError(f"{name}: the file is empty (0 bytes)")
    return _decode_container(str(path), name)


def _decode_container(source, name: str) -> tuple[list[np.ndarray], float, str]:
    import av

    try:
        with av.open(source) as container:
            if not container.streams.video:
                raise DataError(f"{name}: holds no video stream")
            stream = container.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            fps = float(stream.average_rate or 0.0)
            codec = stream.codec_context.name
    except DataError:
        raise
    except Exception as exc:  # PyAV's errors: not a container, truncated, unsupported codec
        why = (getattr(exc, "strerror", None) or str(exc).split(": '", 1)[0]).strip()  # FFmpeg's words, no errno
        raise DataError(f"{name}: cannot be read as video ({why or type(exc).__name__})") from None
    if not frames:
        raise DataError(f"{name}: holds no frames (a zero-length clip)")
    return frames, fps, codec


def _read_frame_folder(path: Path, name: str) -> list[np.ndarray]:
    from PIL import Image

    files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"{name}: a frame folder with no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    frames = []
    for file in files:
        try:
            with Image.open(file) as image:
                frames.append(np.asarray(image.convert("RGB")))
        except Exception as exc:  # PIL raises many types for a broken file
            raise DataError(f"{display_path(file)}: frame of {name} cannot be read ({exc})") from None
    if len({f.shape for f in frames}) > 1:
        raise DataError(f"{name}: its frames differ in size ({', '.join(sorted({str(f.shape[:2]) for f in frames}))})")
    return frames


def _as_rgb(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:  # (T, H, W): grey
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise DataError(f"an array clip must be (frames, height, width[, 3]), got shape {frames.shape}")
    return frames.astype(np.uint8, copy=False)


def sample_indices(count: int, wanted: int) -> np.ndarray:
    """`wanted` frame indices spread uniformly over a clip of `count` frames (repeated when it is shorter):
    the centre of each of `wanted` equal stretches, as VideoMAE / TimeSformer sample a clip."""
    return np.minimum(((np.arange(wanted) + 0.5) * count / wanted).astype(np.int64), count - 1)


def load_clip(value, frames: int, size: int | None) -> np.ndarray:
    """(frames, size, size, 3) uint8: frames sampled uniformly, each resized to a square of `size` (None:
    as they are)."""
    from PIL import Image

    every, _, _ = decode(value)
    picked = [every[i] for i in sample_indices(len(every), frames)]
    return np.stack([f if size is None or f.shape[:2] == (size, size) else
                     np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR)) for f in picked])


# -- facts for the quality gate ----------------------------------------------------------
def facts_of(frames: list[np.ndarray], fps: float, codec: str) -> ClipFacts:
    digest = hashlib.blake2b(digest_size=16)
    for frame in frames:  # every pixel: two different clips of one digit may share a coarse picture
        digest.update(np.ascontiguousarray(frame).tobytes())
    height, width = frames[0].shape[:2]
    return ClipFacts(digest.hexdigest(), len(frames), round(len(frames) / fps, 4) if fps else 0.0,
                     round(fps, 3), width, height, codec)


@lru_cache(maxsize=200_000)
def _facts_of_path(path: str, size: int, mtime: float) -> ClipFacts:
    return facts_of(*decode(path))


def clip_facts(value) -> tuple[ClipFacts | None, str | None]:
    """(facts, None) for a clip that decodes, (None, why) for one that does not."""
    try:
        if isinstance(value, (str, Path)) and Path(value).is_file():
            stat = Path(value).stat()
            return _facts_of_path(str(value), stat.st_size, stat.st_mtime), None
        return facts_of(*decode(value)), None
    except DataError as exc:
        text = str(exc)
        return None, text.split(": ", 1)[-1] if ": " in text else text
