"""Audio sources (class folders, a folder of clips with a transcript table beside them, tables of paths),
reading a clip as mono float32 at a sample rate, and what the quality gate learns of each clip.

Decoding is soundfile's (libsndfile: wav, flac, ogg/vorbis and opus, mp3 from libsndfile 1.1 on), not
torchaudio's, which with this torch pulls a CUDA build or fails to import. Resampling is scipy's
polyphase filter (`resample_poly`), exact for the integer ratios speech rates have (8k -> 16k).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import lru_cache
from math import gcd
from pathlib import Path

import numpy as np
import pandas as pd

from danlu.data.paths import display_path
from danlu.data.rows import finish
from danlu.errors import DataError

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64"}
# The transcript table a folder of clips may carry, looked for in this order.
TRANSCRIPT_FILES = ("metadata.csv", "transcripts.csv", "transcripts.jsonl", "metadata.jsonl", "transcripts.tsv")
SILENT_DBFS = -50.0  # a clip whose loudest 50 ms window stays below this is silence


@dataclass(frozen=True)
class ClipFacts:
    digest: str  # of the decoded samples: the same sound in two containers is one clip
    seconds: float
    sample_rate: int
    channels: int
    peak_dbfs: float  # the loudest 50 ms window's RMS, in dB below full scale


def is_audio_path(value) -> bool:
    return isinstance(value, str) and Path(value).suffix.lower() in AUDIO_EXTENSIONS


def looks_like_audio_paths(values: pd.Series) -> bool:
    present = values.dropna()
    return not present.empty and is_audio_path(present.iloc[0])


def has_audio(path: Path, look: int = 50) -> bool:
    """A folder of clips, directly or one level down (class folders). The first `look` names of each folder
    decide: an image folder of 50,000 files is not read through to find that it holds no sound."""
    from itertools import islice

    for child in islice(path.iterdir(), 10 * look):
        if child.suffix.lower() in AUDIO_EXTENSIONS and child.is_file():
            return True
        if child.is_dir() and any(f.suffix.lower() in AUDIO_EXTENSIONS for f in islice(child.iterdir(), look)):
            return True
    return False


def read_audiofolder(path: Path, read_table) -> pd.DataFrame:
    """`root/<class>/<clip>` (audio, label); or clips with a transcript table beside them (metadata.csv,
    transcripts.csv/jsonl) whose path column names them, as Hugging Face's audiofolder lays them out.
    `read_table(path)`: the data stage's reader of a csv/tsv/jsonl file."""
    from danlu.data.images import resolve_image_paths

    table = next((path / name for name in TRANSCRIPT_FILES if (path / name).is_file()), None)
    if table is not None:
        frame = read_table(table)
        column = next((c for c in ("audio", "path", "file_name", "file", "filename") if c in frame.columns), None)
        if column is None:
            raise DataError(f"{display_path(table)}: no column naming the clips (audio, path, file_name, file); "
                            f"columns are: {', '.join(c for c in frame.columns if not c.startswith('_'))}")
        frame["audio"] = resolve_image_paths(frame[column], table)
        if column != "audio":
            frame = frame.drop(columns=[column])
        _no_orphans(path, frame, table)
        return frame
    paths, labels = [], []
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
        paths.extend(str(f) for f in files)
        labels.extend([folder.name] * len(files))
    if not paths:
        loose = [f for f in path.iterdir() if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS]
        if loose:
            raise DataError(f"{display_path(path)}: {len(loose)} clips but no transcript table beside them "
                            f"({', '.join(TRANSCRIPT_FILES)}) and no class subfolders; e.g. "
                            f"{display_path(loose[0])} has no transcript or label")
        raise DataError(f"{display_path(path)}: no audio found; an audio folder holds one subfolder per class, or "
                        f"clips with a transcript table ({', '.join(TRANSCRIPT_FILES)}); formats "
                        f"{', '.join(sorted(AUDIO_EXTENSIONS))}")
    return finish(pd.DataFrame({"audio": paths, "label": labels}), range(1, len(paths) + 1), path)


def _no_orphans(path: Path, frame: pd.DataFrame, table: Path) -> None:
    """A clip in the folder that the table does not name has no transcript: say which, not train without it."""
    named = {str(Path(p).resolve()) for p in frame["audio"].dropna()}
    for clip in sorted(path.rglob("*")):
        if clip.is_file() and clip.suffix.lower() in AUDIO_EXTENSIONS and str(clip.resolve()) not in named:
            raise DataError(f"{display_path(clip)}: an audio file with no transcript (not named in "
                            f"{display_path(table)})")


# -- reading one clip ----------------------------------------------------------------
def _as_source(value):
    """A path, raw bytes, or a {bytes, path} record -> what soundfile opens, and how to name it."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return io.BytesIO(value["bytes"]), value.get("path") or "the uploaded audio"
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return io.BytesIO(value), "the uploaded audio"
    if isinstance(value, (str, Path)) and str(value).strip():
        return str(value), display_path(value)
    raise DataError(f"no audio: expected a file path or audio bytes, got {type(value).__name__}")


def decode(value) -> tuple[np.ndarray, int]:
    """(samples as float32, channels last, sample rate); a clear DataError naming the file otherwise."""
    import soundfile as sf

    source, name = _as_source(value)
    if isinstance(source, str):
        path = Path(source)
        if not path.exists():
            raise DataError(f"{name}: no such audio file")
        if path.is_file() and path.stat().st_size == 0:
            raise DataError(f"{name}: the file is empty (0 bytes)")
    try:
        samples, rate = sf.read(source, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors: not audio, truncated, unsupported
        why = str(exc).split(": ", 1)[-1] if isinstance(source, str) else str(exc)
        raise DataError(f"{name}: cannot be read as audio ({why.strip() or type(exc).__name__})") from None
    if samples.shape[0] == 0:
        raise DataError(f"{name}: holds no samples (a zero-length clip)")
    if not np.isfinite(samples).all():
        raise DataError(f"{name}: holds samples that are not finite numbers")
    return samples, int(rate)


def load_audio(value, sample_rate: int) -> np.ndarray:
    """One clip as mono float32 at `sample_rate`. An array is taken as already at that rate."""
    if isinstance(value, np.ndarray):
        wave = value.astype(np.float32)
        return wave.mean(axis=1) if wave.ndim == 2 else wave
    samples, rate = decode(value)
    return resample(samples.mean(axis=1), rate, sample_rate)


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return np.ascontiguousarray(wave, dtype=np.float32)
    from scipy.signal import resample_poly

    common = gcd(rate, target)
    return resample_poly(wave, target // common, rate // common).astype(np.float32)


@lru_cache(maxsize=200_000)
def _facts_of_path(path: str, size: int, mtime: float) -> ClipFacts:
    return facts_of(*decode(path))


def facts_of(samples: np.ndarray, rate: int) -> ClipFacts:
    mono = samples.mean(axis=1)
    window = max(1, rate // 20)
    usable = len(mono) // window * window
    frames = mono[:usable].reshape(-1, window) if usable else mono.reshape(1, -1)
    rms = float(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)).max())
    digest = hashlib.blake2b(np.round(mono, 4).tobytes(), digest_size=16).hexdigest()
    return ClipFacts(digest, round(len(mono) / rate, 4), rate, samples.shape[1],
                     round(20 * np.log10(max(rms, 1e-10)), 1))


def clip_facts(value) -> tuple[ClipFacts | None, str | None]:
    """(facts, None) for a clip that decodes, (None, why) for one that does not."""
    try:
        if isinstance(value, (str, Path)) and Path(value).is_file():
            stat = Path(value).stat()
            return _facts_of_path(str(value), stat.st_size, stat.st_mtime), None
        if isinstance(value, np.ndarray):
            return facts_of(value.reshape(len(value), -1).astype(np.float32), 16_000), None
        return facts_of(*decode(value)), None
    except DataError as exc:
        return None, str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)
