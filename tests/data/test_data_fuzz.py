"""Seeded fuzzing of the data stage, driven as `danlu check` drives it (load_splits -> check_quality ->
enforce): every mutated csv, tsv, jsonl, json or image input either loads and passes or fails the
gate, or stops with danlu's own DanluError. Any other exception is a bug, and so is a gate that
passes data training cannot use: no rows, one class, classes a classifier cannot order, a label or
numeric feature that is no finite float32, numbers taken for categories, a table the tabular
preprocessing refuses or turns into non-finite inputs, an image that does not decode.

Deterministic: case i of family F is generated from random.Random(f"{SEED}:{F}:{i}"). Another
seed: DANLU_FUZZ_SEED=7; more cases: DANLU_FUZZ_SCALE=10. A failure lists the case ids and what was
done to the input, so `case(FAMILY, i, tmp_path, pictures)` rebuilds it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from danlu.data import DataConfig, QualityConfig, check_quality, enforce, load_splits
from danlu.data.images import image_fingerprint
from danlu.errors import DanluError

SEED = int(os.environ.get("DANLU_FUZZ_SEED", "20261201"))
SCALE = float(os.environ.get("DANLU_FUZZ_SCALE", "1"))
CASES = {"csv": 300, "tsv": 80, "jsonl": 260, "json": 60, "imagefolder": 120, "image_csv": 80}

WORDS = ["good", "bad", "movie", "the", "a", "plot", "床前明月光", "疑是地上霜", "é", "naïve", "🙂", "it 's", '"so"']
ODD_CELLS = ["", " ", "nan", "NaN", "null", "None", "N/A", "NA", "?", "abc", "inf", "-inf", "Infinity", "1e300",
             "-1e309", "9" * 5000, "-" + "1" * 400, "0x1F", "1_000", "1,5", "\ufeff3", "３", "🙂", "\x00", '"', "'",
             '"quoted, with comma"', "a\tb", "\r", "-", "true", "[0]", "{}", "é" * 3, "\\", "\u2028", "~nobody/x"]
ODD_JSON = ["null", "[]", "[0]", '["a", "b"]', "{}", '{"a": {"b": [1, {"c": null}]}}', "true", "false", "1e400",
            "-1e400", "NaN", "Infinity", "-Infinity", "9" * 5000, '"' + "9" * 5000 + '"', "[" * 100_000 + "]" * 100_000,
            "[" * 200 + "]" * 200, '"\\ud800"', '"\\udfff x"', '"\\ud83d\\ude00"', '""', '"nan"', '"None"', '"N/A"',
            '"?"', "1.5", "-0", "12345678901234567890123", '"\\u0000"', '"inf"', "1" * 400]
# What the oracle below holds every passed gate to, written out apart from danlu's own code.
FLOAT32_MAX = float(np.finfo(np.float32).max)
GAPS = {"", "nan", "none", "null", "n/a", "na"}
ODD_BYTES = [b"\x00", b"\xff", b"\xef\xbb\xbf", b"\r", b'"', b",", b"\t", b"\n", b"\xc3", b"\\", b"{", b"[",
             b"\xe2\x80\xa8"]


@dataclass
class Case:
    family: str
    index: int
    folder: Path
    data: dict
    roles: list[str]
    classification: bool
    quality: dict
    done: list[str] = field(default_factory=list)  # what was done to the input, for the failure message

    @property
    def name(self) -> str:
        return f"{self.family}#{self.index}"


# -- building inputs -----------------------------------------------------------------------------

def text_rows(rng: random.Random, classification: bool) -> tuple[list[str], list[list]]:
    labels = ["pos", "neg"] if rng.random() < 0.5 else [0, 1]
    rows = []
    for _ in range(rng.randint(6, 24)):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
        rows.append([text, rng.choice(labels) if classification else round(rng.uniform(-5, 5), 2)])
    return ["text", "label"], rows


def table_rows(rng: random.Random, classification: bool) -> tuple[list[str], list[list]]:
    rows = []
    for _ in range(rng.randint(8, 30)):
        x = [round(rng.gauss(0, 3), 3), rng.randint(0, 9), round(rng.uniform(0, 1), 4)]
        label = rng.choice(["setosa", "virginica", "versicolor"]) if classification else round(sum(x), 3)
        rows.append([*x, rng.choice(["red", "blue", "green"]), label])
    return ["a", "b", "c", "colour", "label"], rows


def odd_cells(rng: random.Random, header: list[str], rows: list[list], case: Case, pool: list) -> None:
    for _ in range(rng.choice([0, 1, 1, 2, 3, 6])):
        r, c = rng.randrange(len(rows)), rng.randrange(len(header))
        rows[r][c] = rng.choice(pool)
        case.done.append(f"cell {r},{c}={short(rows[r][c])}")
    if rng.random() < 0.1:
        c = rng.randrange(len(header))
        header[c] = rng.choice([header[(c + 1) % len(header)], "", "\ufeff" + header[c], header[c].upper(), "_row"])
        case.done.append(f"header {c}={short(header[c])}")


def delimited(rng: random.Random, header: list[str], rows: list[list], delimiter: str) -> bytes:
    if rng.random() < 0.8:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=delimiter, lineterminator=rng.choice(["\n", "\r\n"]))
        writer.writerow(header)
        writer.writerows(rows)
        text = out.getvalue()
    else:  # no quoting at all: delimiters and quotes inside cells break lines, as hand-made files do
        text = "\n".join(delimiter.join(str(v) for v in line) for line in [header, *rows]) + "\n"
    return text.encode("utf-8", "surrogatepass")


def json_lines(rng: random.Random, header: list[str], rows: list[list], case: Case) -> bytes:
    cells = [[json.dumps(v) for v in row] for row in rows]
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        r, c = rng.randrange(len(cells)), rng.randrange(len(header))
        cells[r][c] = rng.choice(ODD_JSON)
        case.done.append(f"json {r},{c}={short(cells[r][c])}")
    lines = ["{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in zip(header, row) if rng.random() > 0.03) + "}"
             for row in cells]
    if rng.random() < 0.05:
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(ODD_JSON))
        case.done.append("a line that is no object")
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


def mutate_lines(rng: random.Random, raw: bytes, case: Case) -> bytes:
    lines = raw.split(b"\n")
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        kind = rng.choice(["dup-header", "dup-row", "drop-row", "blank", "short", "bom-mid", "header-only"])
        i = rng.randrange(1, max(len(lines), 2))
        if kind == "dup-header":
            lines.insert(i, lines[0])
        elif kind == "dup-row" and len(lines) > 2:
            lines.insert(i, lines[rng.randrange(1, len(lines))])
        elif kind == "drop-row" and len(lines) > 2:
            del lines[i % len(lines) or 1]
        elif kind == "blank":
            lines.insert(i, b"   ")
        elif kind == "short":
            lines.insert(i, b"x")
        elif kind == "bom-mid":
            lines[i % len(lines)] = b"\xef\xbb\xbf" + lines[i % len(lines)]
        elif kind == "header-only":
            lines = lines[:1]
        case.done.append(kind)
    return b"\n".join(lines)


def mutate_bytes(rng: random.Random, raw: bytes, case: Case, rate: float = 0.25) -> bytes:
    data = bytearray(raw)
    if rng.random() < rate and data:
        cut = rng.randrange(len(data) + 1)
        data = data[:cut]
        case.done.append(f"truncate at {cut}")
    for _ in range(rng.choice([0, 0, 0, 1, 2, 4]) if rng.random() < rate * 2 else 0):
        if not data:
            break
        at = rng.randrange(len(data))
        kind = rng.choice(["flip", "insert", "delete"])
        if kind == "flip":
            data[at] ^= 1 << rng.randrange(8)
        elif kind == "insert":
            data[at:at] = rng.choice(ODD_BYTES)
        else:
            del data[at:at + rng.randint(1, 8)]
        case.done.append(f"{kind} at {at}")
    if rng.random() < 0.05:
        data = bytearray(b"\xef\xbb\xbf") + data
        case.done.append("BOM")
    return bytes(data)


def quality_and_split(rng: random.Random, case: Case) -> None:
    case.quality = {"on_fail": rng.choice(["stop", "warn"]), "invalid": rng.choice(["stop", "drop", "impute"]),
                    "max_missing": rng.choice([0.0, 0.5, 1.0]), "max_unreadable": rng.choice([0, 5]),
                    "max_duplicates": 1.0, "max_leakage": rng.choice([0.0, 1.0]), "min_class_count": rng.choice([0, 2])}
    case.data["split"] = rng.choice([{"validation": 0, "test": 0}, {"validation": 0.2, "test": 0.2},
                                     {"validation": 2, "test": 3, "shuffle": False},
                                     {"validation": 0.2, "test": 0.2, "stratify": False}])
    if rng.random() < 0.15:
        case.data["limit"] = {"train": rng.randint(1, 6)}


def tabular_case(case: Case, rng: random.Random, fmt: str) -> None:
    case.classification = rng.random() < 0.6
    texts = rng.random() < 0.5
    case.roles = ["text", "label"] if texts else ["label"]
    # Sometimes a test file of its own: a column can then be numbers in one file and text in the other.
    for split in ["train"] + (["test"] if rng.random() < 0.25 else []):
        header, rows = (text_rows if texts else table_rows)(rng, case.classification)
        (case.folder / f"{split}.{fmt}").write_bytes(tabular_file(rng, fmt, header, rows, case))
        case.data[split] = f"{split}.{fmt}"
    if not texts and rng.random() < 0.2:
        case.data["categorical"] = ["colour"]


def tabular_file(rng: random.Random, fmt: str, header: list[str], rows: list[list], case: Case) -> bytes:
    if fmt in ("csv", "tsv"):
        odd_cells(rng, header, rows, case, ODD_CELLS)
        raw = delimited(rng, header, rows, "," if fmt == "csv" else "\t")
        return mutate_bytes(rng, mutate_lines(rng, raw, case), case)
    if fmt == "jsonl":
        odd_cells(rng, header, rows, case, ODD_CELLS[:20])
        return mutate_bytes(rng, mutate_lines(rng, json_lines(rng, header, rows, case), case), case, rate=0.08)
    lines = json_lines(rng, header, rows, case).decode("utf-8", "surrogatepass").strip().split("\n")
    return mutate_bytes(rng, ("[" + ",\n".join(lines) + "]").encode("utf-8", "surrogatepass"), case, rate=0.15)


# -- images --------------------------------------------------------------------------------------

def header_only_png(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels: decompression bombs look like this to a header check."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def pictures() -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(SEED)
    out = []
    for fmt, size in (("PNG", 8), ("JPEG", 16), ("JPEG", 32), ("GIF", 8), ("BMP", 8), ("PNG", 24)):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format=fmt)
        out.append(buffer.getvalue())
    return out


def odd_picture(rng: random.Random, raw: bytes, case: Case) -> bytes:
    kind = rng.choice(["truncate", "truncate-tail", "flip", "zero-tail", "text", "empty", "bomb", "warn-bomb", "bytes"])
    case.done.append(kind)
    if kind == "truncate":
        return raw[:rng.randrange(len(raw))]
    if kind == "truncate-tail":
        return raw[:-rng.randint(1, 64)]
    if kind == "flip":
        return mutate_bytes(random.Random(rng.random()), raw, case, rate=1.0)
    if kind == "zero-tail":
        cut = rng.randrange(len(raw))
        return raw[:cut] + b"\0" * (len(raw) - cut)
    if kind == "text":
        return b"this is not a picture"
    if kind == "empty":
        return b""
    if kind == "bomb":
        return header_only_png(40_000, 40_000)
    if kind == "warn-bomb":
        return header_only_png(10_000, 10_000)
    return bytes(rng.randrange(256) for _ in range(64))


def image_case(case: Case, rng: random.Random, pictures: list[bytes], as_csv: bool) -> None:
    case.classification, case.roles = True, ["image", "label"]
    entries = []
    for label in ("cat", "dog"):
        (case.folder / "imgs" / label).mkdir(parents=True, exist_ok=True)
        for i in range(rng.randint(2, 4)):
            raw = rng.choice(pictures)
            if rng.random() < 0.3:
                raw = odd_picture(rng, raw, case)
            ext = rng.choice([".png", ".jpg", ".gif", ".bmp"])
            (case.folder / "imgs" / label / f"{i}{ext}").write_bytes(raw)
            entries.append([f"imgs/{label}/{i}{ext}", label])
    if not as_csv:
        case.data.update(train="imgs")
        return
    header = ["path", "label"]
    for _ in range(rng.choice([0, 1, 2])):
        row = rng.randrange(len(entries))
        entries[row][0] = rng.choice(["", "nope.png", "imgs", "imgs/cat", "/dev/null", "a\x00b.png", "~nobody/x.png",
                                      "x" * 300 + ".png", "imgs/../imgs/cat/0.png", "nan", "?"])
        case.done.append(f"path {row}={short(entries[row][0])}")
    odd_cells(rng, header, entries, case, ["", "NaN", "null", "?", "[0]", "9" * 5000, "dog "])
    raw = mutate_bytes(rng, delimited(rng, header, entries, ","), case, rate=0.1)
    (case.folder / "index.csv").write_bytes(raw)
    case.data.update(train="index.csv", columns={"image": "path"})


def case(family: str, index: int, root: Path, pictures: list[bytes] | None = None) -> Case:
    rng = random.Random(f"{SEED}:{family}:{index}")
    folder = root / f"{family}-{index}"
    folder.mkdir(parents=True)
    made = Case(family, index, folder, {}, [], True, {})
    if family in ("imagefolder", "image_csv"):
        image_case(made, rng, pictures, as_csv=family == "image_csv")
    else:
        tabular_case(made, rng, family)
    quality_and_split(rng, made)
    return made


# -- running -------------------------------------------------------------------------------------

def run(made: Case) -> str | None:
    """None when the case ends as it should, else what went wrong."""
    quality = QualityConfig(**made.quality)
    try:
        data = DataConfig(**made.data)
        splits = load_splits(data, made.roles, made.folder, classification=made.classification)
        report = check_quality(splits, quality, made.roles, made.classification)
        json.dumps(report.to_dict())
        report.to_markdown()
        enforce(report, quality.on_fail)
    except DanluError:
        return None
    except Exception as exc:  # noqa: BLE001 - the point: nothing but a DanluError may escape
        return f"{type(exc).__name__}: {short(str(exc), 120)}"
    return untrainable(splits, made)


def untrainable(splits, made: Case) -> str | None:
    """Why data the gate let through would break training, or None."""
    from danlu.tasks.classifier import plain

    train = splits.frames["train"]
    if train.empty:
        return "gate passed with no training rows"
    if made.classification and train["label"].nunique() < 2:
        return "gate passed a classifier with one class"
    if made.classification:
        try:  # how a classifier orders its classes
            sorted((plain(v) for v in pd.unique(train["label"])), key=lambda v: (isinstance(v, str), v))
        except TypeError as exc:
            return f"gate passed labels a classifier cannot order: {exc}"
    numeric = [c for c in splits.features if c not in splits.categorical]
    for column in set(splits.categorical) - set(made.data.get("categorical") or []):
        if mostly_numbers(train[column]):
            return f"gate passed the numbers of '{column}' as categories"
    if made.roles == ["label"]:
        problem = unpreprocessable(splits, numeric)
        if problem:
            return problem
    for frame in splits.frames.values():
        columns = numeric + ([] if made.classification else ["label"])
        for column in columns:
            values = frame[column]
            if not pd.api.types.is_numeric_dtype(values):
                return f"gate passed a numeric column '{column}' of dtype {values.dtype}"
            numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
            present = numbers[~np.isnan(numbers)]
            if (np.abs(present) > FLOAT32_MAX).any() or (column == "label" and len(present) < len(numbers)):
                return f"gate passed non-finite values in '{column}'"
        if "image" in frame and any(err for _, err in map(image_fingerprint, frame["image"])):
            return "gate passed an image that does not decode"
    return None


def unpreprocessable(splits, numeric: list[str]) -> str | None:
    """The tabular task's own preprocessing, fitted on train, must give finite inputs for every split."""
    from danlu.tasks.tabular.preprocess import Preprocessing

    try:
        pre = Preprocessing.fit(splits.frames["train"], numeric, splits.categorical)
        inputs = [pre.transform(frame) for frame in splits.frames.values()]
    except DanluError as exc:
        return f"gate passed a table the preprocessing refuses: {exc}"
    if not all(np.isfinite(x).all() for x in inputs):
        return "gate passed a table the preprocessing turns into non-finite inputs"
    return None


def mostly_numbers(values: pd.Series) -> bool:
    cells = [str(v).strip() for v in values.dropna() if str(v).strip().lower() not in GAPS]
    return bool(cells) and 2 * sum(map(is_float, cells)) >= len(cells)


def is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def short(value, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width] + "…"


def fuzz(family: str, root: Path, pictures=None) -> None:
    failures = []
    for index in range(int(CASES[family] * SCALE)):
        made = case(family, index, root, pictures)
        problem = run(made)
        if problem:
            failures.append((problem, made))
    kinds = Counter(problem.split(":")[0] for problem, _ in failures)
    shown = "\n".join(f"  {made.name} [{', '.join(made.done) or 'unchanged'}] {made.quality}: {problem}"
                      for problem, made in failures[:12])
    assert not failures, f"{len(failures)} of {int(CASES[family] * SCALE)} {family} cases (seed {SEED}): " \
                         f"{dict(kinds)}\n{shown}"


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("family", ["csv", "tsv", "jsonl", "json"])
def test_fuzzed_tables_load_or_stop_with_a_danlu_error(family, tmp_path):
    fuzz(family, tmp_path)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("family", ["imagefolder", "image_csv"])
def test_fuzzed_images_load_or_stop_with_a_danlu_error(family, tmp_path, pictures):
    fuzz(family, tmp_path, pictures)


def test_the_fuzzer_is_deterministic_and_covers_every_mutation(tmp_path, pictures):
    first = [case("csv", i, tmp_path / "a").done for i in range(40)]
    assert first == [case("csv", i, tmp_path / "b").done for i in range(40)]
    images = [case("imagefolder", i, tmp_path / "c", pictures).done for i in range(60)]
    assert sum(map(bool, first)) > 20 and {"bomb", "truncate-tail"} <= {d for done in images for d in done}
