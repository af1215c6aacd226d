"""Readers: one source (file, folder, builtin:NAME, hub:NAME, idx mapping) -> pandas.

Every frame gets `_row` (where the example is in its source: the 1-based line number for text
files, header included, else index + 1) and `_source` (the file it came from), so every later
message can say "train.tsv line 812". Values stay as written, except that columns whose every
value reads as a number become numbers (gaps spelled NaN, null, N/A in them missing) and empty
fields become missing.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from pathlib import Path

import pandas as pd

from danlu.data import audio, builtin, coco, hub, images, video
from danlu.data.config import DataConfig
from danlu.data.paths import display_path, is_glob, resolve_data_path, resolve_data_paths
from danlu.data.rows import finish
from danlu.data.values import is_gap_text, spelled_missing, to_number
from danlu.errors import DataError

EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
              ".json": "json", ".parquet": "parquet", ".pq": "parquet", ".txt": "txt", ".text": "txt"}
_MAX_LISTED = 5

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents are data, not an attack


def read_source(source: str | dict, data: DataConfig, recipe_dir: Path | None
                ) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Read one source. A dict comes back when the source itself holds several splits
    (a hub dataset, an image folder with train/ and test/ inside). A folder is an audio folder when it
    holds clips (directly or in class folders), else an image folder."""
    if isinstance(source, list) or (isinstance(source, str) and is_glob(source)
                                    and not source.startswith(("builtin:", "hub:"))):
        return read_many(source, data, recipe_dir)
    fmt = source_format(source, data.format)
    if fmt == "idx":
        if not isinstance(source, dict):
            raise DataError(f"format idx needs a mapping source {{images: PATH, labels: PATH}}, got '{source}'")
        return images.read_idx(source, recipe_dir)
    if isinstance(source, dict):
        raise DataError(f"a mapping source ({sorted(source)}) is only for MNIST idx files, but format is {fmt}")
    if fmt == "builtin":
        return builtin.read_builtin(source.split(":", 1)[-1] if source.startswith("builtin:") else source)
    if fmt == "hub":
        return hub.read_hub(source.split(":", 1)[-1] if source.startswith("hub:") else source, data.hub)

    path = resolve_data_path(source, recipe_dir)
    if fmt == "auto" and path.is_dir():
        fmt = "yolo" if coco.looks_like_yolo(path) else "audiofolder" if audio.has_audio(path) else "imagefolder"
        if fmt == "imagefolder" and video.has_video(path):
            return video.read_videofolder(path)  # class folders of clips: video files or folders of frames
    elif fmt == "auto":
        fmt = path_format(path)
    if fmt == "coco":
        return coco.read_coco(path)
    if fmt == "yolo":
        return coco.read_yolo(path)
    if fmt == "audiofolder":
        if not path.is_dir():
            raise DataError(f"{display_path(path)}: format audiofolder needs a folder of clips")
        return audio.read_audiofolder(path, lambda table: read_source(str(table), data.model_copy(
            update={"format": "auto", "columns": {}}), recipe_dir))
    if fmt == "imagefolder":
        if not path.is_dir():
            raise DataError(f"{display_path(path)}: format imagefolder needs a folder with one subfolder per class")
        return images.read_imagefolder(path)
    if path.is_dir():
        raise DataError(f"{display_path(path)} is a folder; format {fmt} needs a file")
    if fmt == "parquet":
        return read_parquet(path)
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "json":
        return read_json(path)
    if fmt == "txt":
        return read_txt(path, whole=data.txt == "file")
    is_tsv = fmt == "tsv" or (fmt == "image_csv" and path_format(path, strict=False) == "tsv")
    frame = read_delimited(
        path, delimiter=data.delimiter or ("\t" if is_tsv else ","),
        # SST-2 and most tsv dumps have bare quotes inside sentences; quoting would eat them.
        quoting=csv.QUOTE_NONE if is_tsv else csv.QUOTE_MINIMAL,
        header=data.header, column_names=data.column_names)
    image_column = next((c for c in data.role_columns("image") if c in frame.columns), None)
    if fmt == "image_csv" and image_column is None:
        raise DataError(
            f"{display_path(path)}: format image_csv needs a column of image paths for role image "
            f"(tried {', '.join(data.role_columns('image'))}); columns are: {', '.join(_user_columns(frame))}; "
            "set data.columns.image to the path column")
    if image_column and (fmt == "image_csv" or images.looks_like_image_paths(frame[image_column])):
        frame[image_column] = images.resolve_image_paths(frame[image_column], path)
    audio_column = next((c for c in data.role_columns("audio") if c in frame.columns), None)
    if audio_column and audio.looks_like_audio_paths(frame[audio_column]):
        frame[audio_column] = images.resolve_image_paths(frame[audio_column], path)
    video_column = next((c for c in data.role_columns("video") if c in frame.columns), None)
    if video_column and video.looks_like_video_paths(frame[video_column], path.parent):
        frame[video_column] = images.resolve_image_paths(frame[video_column], path)
    return frame


def read_many(source: str | list[str], data: DataConfig, recipe_dir: Path | None) -> pd.DataFrame:
    """Several files (a list, globs) stacked in order; each row keeps its own file and row number."""
    paths = [p for item in ([source] if isinstance(source, str) else source)
             for p in resolve_data_paths(item, recipe_dir)]
    frames = []
    for path in paths:
        got = read_source(str(path), data, recipe_dir)
        if isinstance(got, dict):
            raise DataError(f"{display_path(path)} holds splits ({', '.join(got)}); list only plain files")
        frames.append(got)
    return pd.concat(frames, ignore_index=True)


def source_format(source: str | dict, declared: str) -> str:
    """The format a source is read with: prefixes and idx mappings speak for themselves."""
    if isinstance(source, dict):
        return "idx"
    for prefix in ("builtin", "hub"):
        if source.startswith(prefix + ":"):
            return prefix
    return declared


def path_format(path: Path, strict: bool = True) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    suffix = suffixes[-1] if suffixes else ""
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if "idx" in path.name and "ubyte" in path.name and strict:
        raise DataError(f"{display_path(path)}: an idx file is read as a pair; "
                        "give the source as {images: IMAGES_FILE, labels: LABELS_FILE}")
    if not strict:
        return "csv"
    raise DataError(f"{display_path(path)}: cannot tell the format from the extension '{suffix or '(none)'}'; "
                    f"supported: {', '.join(sorted(EXTENSIONS))} (optionally .gz); or set data.format")


def read_text(path: Path) -> str:
    """The file as text (gzip-aware, BOM-tolerant); a decoding error names its line."""
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DataError(f"{display_path(path)}: cannot read: {exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{display_path(path)}: line {line} is not valid UTF-8 ({exc.reason}); "
                        "save the file as UTF-8") from None


def read_delimited(path: Path, *, delimiter: str, quoting: int, header: bool,
                   column_names: list[str] | None) -> pd.DataFrame:
    name = display_path(path)
    text = read_text(path)
    if not text.strip():
        raise DataError(f"{name} is empty")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    names: list[str] | None = None if header else column_names
    rows: list[list[str]] = []
    lines: list[int] = []
    bad: list[tuple[int, int]] = []
    end = 0
    try:
        for fields in reader:
            start, end = end + 1, reader.line_num  # a quoted field may span lines
            if not fields or (len(fields) == 1 and not fields[0].strip() and names and len(names) > 1):
                continue
            if names is None:
                if header:
                    names = column_names or fields
                    if column_names and len(column_names) != len(fields):
                        raise DataError(f"{name}: column_names has {len(column_names)} names "
                                        f"but the header on line {start} has {len(fields)} fields")
                    continue
                names = [f"column_{i}" for i in range(1, len(fields) + 1)]
            if len(fields) != len(names):
                bad.append((start, len(fields)))
                continue
            rows.append(fields)
            lines.append(start)
    except csv.Error as exc:
        raise DataError(f"{name}: line {reader.line_num}: {exc}") from None
    if bad:
        sep = "tab" if delimiter == "\t" else repr(delimiter)
        listed = ", ".join(f"line {ln} ({n} field{'s' * (n != 1)})" for ln, n in bad[:_MAX_LISTED])
        more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        source_of_width = "the header" if header else ("column_names" if column_names else "the first line")
        raise DataError(f"{name}: {_lines(len(bad), 'does', 'do')} not have {len(names)} fields "
                        f"like {source_of_width}: {listed}{more}; check the delimiter ({sep}) and quoting")
    if not rows:
        raise DataError(f"{name} is empty (a header line but no data)")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"{name}: column names repeat: {', '.join(dupes)}; rename them or set data.column_names")
    frame = pd.DataFrame(rows, columns=names, dtype=object)
    frame = frame.mask(frame == "")  # an empty field is a missing value, whatever the column
    return finish(coerce_numeric(frame), lines, path)


def read_jsonl(path: Path) -> pd.DataFrame:
    name = display_path(path)
    text = read_text(path)
    records: list[dict] = []
    lines: list[int] = []
    bad: list[str] = []
    # split("\n"), not splitlines(): JSON strings may hold U+2028, which splitlines breaks on.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record, why = _load_json(line)
        except json.JSONDecodeError as exc:
            bad.append(f"line {number} ({exc.msg} at column {exc.colno})")
            continue
        if why:
            bad.append(f"line {number} ({why})")
            continue
        if not isinstance(record, dict):
            bad.append(f"line {number} (a {type(record).__name__}, not an object)")
            continue
        records.append(record)
        lines.append(number)
    if bad:
        more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        raise DataError(f"{name}: {_lines(len(bad), 'is not a JSON object', 'are not JSON objects')}: "
                        f"{', '.join(bad[:_MAX_LISTED])}{more}")
    if not records:
        raise DataError(f"{name} is empty")
    return finish(pd.DataFrame.from_records(records), lines, path)


def read_json(path: Path) -> pd.DataFrame:
    name = display_path(path)
    text = read_text(path)
    if not text.strip():
        raise DataError(f"{name} is empty")
    try:
        content, why = _load_json(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if why:
        raise DataError(f"{name}: invalid JSON: {why}")
    if coco.is_coco(content):  # COCO annotations: one row per image, its objects in a list
        return coco.frame_from_coco(content, path)
    if isinstance(content, dict):
        lists = [v for v in content.values() if isinstance(v, list)]
        if len(lists) == 1 and all(isinstance(r, dict) for r in lists[0]):
            content = lists[0]  # {"data": [...]} wrappers
        elif lists and len(lists) == len(content) and len({len(v) for v in lists}) == 1:
            content = pd.DataFrame(content).to_dict("records")  # {column: [values]}
    if not isinstance(content, list):
        raise DataError(f"{name}: expected a JSON array of objects (or use .jsonl, one object per line)")
    not_objects = [i + 1 for i, r in enumerate(content) if not isinstance(r, dict)]
    if not_objects:
        raise DataError(f"{name}: {len(not_objects)} array items are not objects: items "
                        f"{', '.join(map(str, not_objects[:_MAX_LISTED]))}")
    if not content:
        raise DataError(f"{name} is empty")
    return finish(pd.DataFrame.from_records(content), range(1, len(content) + 1), path)


def _load_json(text: str) -> tuple[object, str | None]:
    """(the value, None), or (None, why it is JSON danlu cannot use); a syntax error is raised as is."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        return None, "nested too deeply"
    except ValueError:  # Python refuses to read an integer of more than 4,300 digits
        return None, "an integer too long to read"
    # JSON may spell half of a UTF-16 pair ("\ud800"), which is no character: nothing downstream can encode it.
    if "\\u" in text and _has_lone_surrogate(value):
        return None, "a \\u escape that is half of a UTF-16 surrogate pair, not a character"
    return value, None


def _has_lone_surrogate(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{display_path(path)}: cannot read as parquet: {exc}") from None
    if frame.empty:
        raise DataError(f"{display_path(path)} is empty")
    return finish(frame.reset_index(drop=True), range(1, len(frame) + 1), path)


def read_txt(path: Path, whole: bool = False) -> pd.DataFrame:
    """One example per line, in a column `text`; blank lines are skipped but keep their numbers.
    whole: the file is one text (a corpus for language modelling), its line breaks kept."""
    if whole:
        text = read_text(path).replace("\r\n", "\n")
        if not text.strip():
            raise DataError(f"{display_path(path)} is empty")
        return finish(pd.DataFrame({"text": [text]}), [1], path)
    pairs = [(n, line.rstrip("\r")) for n, line in enumerate(read_text(path).split("\n"), start=1)
             if line.strip()]
    if not pairs:
        raise DataError(f"{display_path(path)} is empty")
    return finish(pd.DataFrame({"text": [p[1] for p in pairs]}), [p[0] for p in pairs], path)


def coerce_numeric(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns whose every value reads as a number become numbers, gaps spelled as text (NaN, null,
    N/A) in them missing. A column with stray text keeps its text: whether such a column is numbers
    is decided for the feature columns alone (load_splits), and the stray cells are the gate's to count."""
    for column in frame.columns:
        values = frame[column]
        present = values.dropna()
        if present.empty:
            continue
        numbers = _numbers(values, present)
        if numbers is not None:
            frame[column] = numbers
        elif values.dtype == object and pd.api.types.infer_dtype(present, skipna=True) == "string":
            frame[column] = values.astype("str")
    return frame


def _numbers(values: pd.Series, present: pd.Series) -> pd.Series | None:
    """The column as numbers when every value that is there, gaps aside, reads as one; else None."""
    first = next((v for v in present.iloc[:50] if not is_gap_text(v)), None)
    if first is None or to_number(first) is None:  # a cheap look first: most text columns stop here
        return None
    gaps = spelled_missing(values)
    try:
        numbers = pd.to_numeric(values.mask(gaps), errors="coerce")
    except (TypeError, ValueError, OverflowError):
        return None
    return numbers if numbers.notna().sum() == len(present) - gaps.sum() else None


def _lines(count: int, one: str, many: str) -> str:
    return f"1 line {one}" if count == 1 else f"{count} lines {many}"


def _user_columns(frame: pd.DataFrame) -> list[str]:
    return [str(c) for c in frame.columns if not str(c).startswith("_")]
