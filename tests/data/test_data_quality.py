"""The quality gate: what it finds, what it drops, and when it stops a run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from danlu.data import DataConfig, QualityConfig, Splits, check_quality, enforce, load_splits, save_report
from danlu.errors import DataError

TEXT = ["text", "label"]


def rule(report, name):
    return next(r for r in report.rules if r.name == name)


def text_splits(write, tmp_path, train: list[str], test: list[str] | None = None, **split) -> Splits:
    write("train.csv", "text,label\n" + "\n".join(train) + "\n")
    config = {"train": "train.csv", "split": {"validation": 0, "test": 0, **split}}
    if test is not None:
        write("test.csv", "text,label\n" + "\n".join(test) + "\n")
        config["test"] = "test.csv"
    return load_splits(DataConfig(**config), TEXT, tmp_path)


def test_corrupt_image_is_unreadable_dropped_and_fails_the_gate(image_folder, tmp_path):
    root = image_folder({"cat": 4, "dog": 4})
    (root / "dog" / "002.jpg").write_bytes(b"this is not a jpeg at all")
    (root / "cat" / "xx.png").write_bytes(b"")
    splits = load_splits(DataConfig(train=str(root), split={"validation": 0, "test": 0}), ["image", "label"], None)
    report = check_quality(splits, QualityConfig(), ["image", "label"], classification=True)
    unreadable = rule(report, "unreadable")
    assert not unreadable.passed and unreadable.count == 2
    assert unreadable.examples == ["train:5", "train:8"]  # sorted paths: cat/000..003, cat/xx.png, dog/...
    assert "002.jpg" in unreadable.message or "xx.png" in unreadable.message
    assert len(splits.frames["train"]) == 7 and splits.dropped == {"train": {"unreadable image": [5, 8]}}
    with pytest.raises(DataError, match=r"unreadable: 2 images cannot be read.*\(e.g. train:5, train:8\)"):
        enforce(report, "stop")


def test_unreadable_under_threshold_passes_but_is_still_dropped(image_folder, tmp_path):
    root = image_folder({"cat": 3, "dog": 3})
    (root / "cat" / "001.jpg").write_bytes(b"garbage")
    splits = load_splits(DataConfig(train=str(root), split={"validation": 0, "test": 0}), ["image", "label"], None)
    report = check_quality(splits, QualityConfig(max_unreadable=1), ["image", "label"], True)
    assert rule(report, "unreadable").passed and report.counts["train"] == {"read": 6, "kept": 5}
    assert str(root / "cat" / "001.jpg") not in splits.frames["train"]["image"].tolist()


def test_missing_image_file_in_csv_is_unreadable(image_folder, write, tmp_path):
    image_folder({"a": 2}, root="imgs")
    write("index.csv", "path,label\nimgs/a/000.jpg,a\nimgs/a/nope.jpg,a\nimgs/a/001.jpg,a\n")
    splits = load_splits(DataConfig(train="index.csv", columns={"image": "path"}, split={"validation": 0, "test": 0}),
                         ["image", "label"], tmp_path)
    report = check_quality(splits, QualityConfig(), ["image", "label"], True)
    assert rule(report, "unreadable").examples == ["train:3"]
    assert "no such file" in rule(report, "unreadable").message


def test_empty_text_and_missing_label_are_dropped_with_row_numbers(write, tmp_path):
    splits = text_splits(write, tmp_path, ["good,1", '"   ",0', "fine,", "bad,0", ",1", "ok,1"])
    report = check_quality(splits, QualityConfig(max_missing=0.6), TEXT, True)
    missing = rule(report, "missing")
    assert missing.passed and missing.count == 3 and missing.observed == pytest.approx(0.5)
    assert sorted(missing.examples) == ["train:3", "train:4", "train:6"]
    assert splits.dropped["train"] == {"missing text": [3, 6], "missing label": [4]}
    assert splits.frames["train"]["text"].tolist() == ["good", "bad", "ok"]
    assert splits.frames["train"]["label"].dtype == np.int64  # the blank label no longer makes it float
    strict = check_quality(text_splits(write, tmp_path, ["good,1", "fine,", "bad,0"]), QualityConfig(), TEXT, True)
    assert not rule(strict, "missing").passed


def test_duplicates_within_a_split(write, tmp_path):
    rows = ["a,1", "b,0", "a,1", "a   ,1", "c,0", "b,1", "d,0", "e,1", "f,0", "g,1"]
    splits = text_splits(write, tmp_path, rows)
    report = check_quality(splits, QualityConfig(max_duplicates=0.1), TEXT, True)
    duplicates = rule(report, "duplicates")
    assert duplicates.count == 2 and duplicates.examples == ["train:4", "train:5"]  # spacing is not content
    assert not duplicates.passed and duplicates.observed == pytest.approx(0.2)
    assert "1 input appears with more than one label" in duplicates.message  # "b" is both 0 and 1
    assert rule(check_quality(text_splits(write, tmp_path, rows), QualityConfig(max_duplicates=0.25), TEXT, True),
                "duplicates").passed


def test_leakage_between_train_and_test(write, tmp_path):
    splits = text_splits(write, tmp_path, ["a,1", "b,0", "c,1", "d,0"], test=["x,1", "b,0", "y,0", "d,1"])
    report = check_quality(splits, QualityConfig(), TEXT, True)
    leakage = rule(report, "leakage")
    assert not leakage.passed and leakage.count == 2 and leakage.observed == pytest.approx(0.5)
    assert leakage.examples == ["test:3", "test:5"]
    assert "test:3 is the same as train:3" in leakage.message
    assert rule(check_quality(splits, QualityConfig(max_leakage=0.5), TEXT, True), "leakage").passed


def test_tabular_leakage_treats_3_and_3_point_0_alike_and_drops_nan_features(write, tmp_path):
    write("train.csv", "x,y,label\n1,red,a\n2,blue,b\n3,red,a\n,blue,b\n4,red,b\n")
    write("test.csv", "x,y,label\n3.0,red,a\n5.5,blue,b\n")
    splits = load_splits(DataConfig(train="train.csv", test="test.csv", split={"validation": 0}), ["label"], tmp_path)
    report = check_quality(splits, QualityConfig(max_missing=0.5), ["label"], True)
    assert splits.dropped == {"train": {"missing feature": [5]}}
    assert rule(report, "leakage").examples == ["test:2"]


def test_identical_arrays_count_as_the_same_input(idx_files, tmp_path):
    images, labels = idx_files(300)  # pixels = i % 256, label = i % 10: rows 256.. repeat rows 0.. pixel for pixel
    splits = load_splits(DataConfig(source={"images": str(images), "labels": str(labels)},
                                    split={"validation": 0, "test": 44, "shuffle": False}), ["image", "label"], None)
    report = check_quality(splits, QualityConfig(), ["image", "label"], True)
    leakage = rule(report, "leakage")
    assert leakage.count == 44 and leakage.examples[0] == "test:257" and "same as train:1" in leakage.message
    assert rule(report, "duplicates").count == 0


def test_imbalance_rare_classes_and_single_class(write, tmp_path):
    rows = [f"t{i},big" for i in range(50)] + ["u1,small", "u2,small", "v1,tiny"]
    report = check_quality(text_splits(write, tmp_path, rows), QualityConfig(max_imbalance=20, min_class_count=2),
                           TEXT, True)
    imbalance = rule(report, "imbalance")
    assert not imbalance.passed and imbalance.observed == 50.0 and "'big'" in imbalance.message
    rare = rule(report, "min_class_count")
    assert not rare.passed and rare.count == 1 and "'tiny' (1)" in rare.message
    assert report.labels["train"] == {"big": 50, "small": 2, "tiny": 1}
    single = check_quality(text_splits(write, tmp_path, ["a,x", "b,x"]), QualityConfig(), TEXT, True)
    assert not rule(single, "classes").passed


def test_regression_skips_class_rules(write, tmp_path):
    report = check_quality(text_splits(write, tmp_path, ["a,1.5", "b,2.5"]), QualityConfig(), TEXT, False)
    assert {r.name for r in report.rules} == {"missing", "duplicates", "invalid"}  # invalid: the labels are numbers
    assert report.labels == {}


def test_text_length_stats_and_limit(write, tmp_path):
    splits = text_splits(write, tmp_path, ["one two,1", "three four five six,0", "x,1"])
    report = check_quality(splits, QualityConfig(max_text_length=10), TEXT, True)
    stats = report.text_lengths["train"]
    assert stats["words"]["min"] == 1 and stats["words"]["max"] == 4 and stats["chars"]["max"] == 19
    assert stats["chars"]["mean"] == pytest.approx((7 + 19 + 1) / 3, abs=0.01)
    length = rule(report, "text_length")
    assert not length.passed and length.examples == ["train:3"]


def test_enforce_lists_every_failure_or_warns(write, tmp_path):
    splits = text_splits(write, tmp_path, ["a,1", "a,1", "b,0", "c,1", "d,0"], test=["a,1", "z,0"])
    report = check_quality(splits, QualityConfig(max_duplicates=0.0), TEXT, True)
    assert not report.passed and {r.name for r in report.failures} == {"duplicates", "leakage"}
    with pytest.raises(DataError) as err:
        enforce(report, "stop")
    message = str(err.value)
    assert "2 rules" in message and "duplicates: 1 row repeats" in message and "(e.g. train:3)" in message
    assert "leakage: 1 validation/test row (50.00%)" in message and "(e.g. test:2)" in message
    warnings = enforce(report, "warn")
    assert len(warnings) == 2 and warnings[0].startswith("duplicates:")
    clean = check_quality(text_splits(write, tmp_path, ["a,1", "b,0", "c,1", "d,0"]), QualityConfig(), TEXT, True)
    assert clean.passed and enforce(clean, "stop") == []


def test_save_report_writes_json_and_markdown(write, tmp_path):
    splits = text_splits(write, tmp_path, ["a,1", "b,0", ",1", "c,0", "d,1"], test=["e,1", "f,0"])
    report = check_quality(splits, QualityConfig(max_missing=1.0), TEXT, True)
    json_path, md_path = save_report(report, tmp_path / "run")
    saved = json.loads(json_path.read_text())
    assert saved["passed"] is True and saved["counts"]["train"] == {"read": 5, "kept": 4}
    assert saved["dropped"] == {"train": {"missing text": [4]}}
    assert {r["name"] for r in saved["rules"]} >= {"missing", "duplicates", "leakage", "imbalance"}
    markdown = md_path.read_text()
    assert "## Label distribution" in markdown and "| missing | pass |" in markdown
    assert "train, missing text: rows 4" in markdown


def test_large_text_check_is_fast(tmp_path):
    import time

    n = 70_000
    frame = pd.DataFrame({"text": [f"sentence {i % 60_000} here" for i in range(n)], "label": np.arange(n) % 2,
                          "_row": np.arange(2, n + 2), "_source": "big.tsv"})
    splits = Splits({"train": frame, "test": frame.iloc[:1000].copy()})
    start = time.perf_counter()
    report = check_quality(splits, QualityConfig(), TEXT, True)
    assert time.perf_counter() - start < 5
    assert rule(report, "duplicates").count == 10_000


def test_image_values_from_every_reader_are_checked(tmp_path):
    import io

    from PIL import Image

    from danlu.data.images import image_fingerprint

    picture = Image.fromarray(np.full((4, 4, 3), 7, dtype=np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    assert image_fingerprint({"bytes": buffer.getvalue(), "path": None})[1] is None  # Hugging Face image
    assert image_fingerprint({"bytes": b"junk", "path": None})[0] is None
    assert image_fingerprint(picture)[1] is None
    assert image_fingerprint(np.zeros((28, 28), np.uint8))[0] == image_fingerprint(np.zeros((28, 28), np.uint8))[0]
    assert image_fingerprint(np.zeros(5))[1].startswith("array of shape")
    assert image_fingerprint(str(tmp_path / "missing.png")) == (None, "no such file")


# -- numeric columns: stray text, gaps spelled out, non-finite values ---------------------------------

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_csv(write, odd: dict[tuple[int, int], str]) -> None:
    """iris.csv with odd[(line, column)] written over a cell (line 1 is the header)."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    lines = [IRIS + ["label"]] + [[f"{v:g}" for v in x] + [str(name)]
                                  for x, name in zip(iris.data, iris.target_names[iris.target])]
    for (line, column), value in odd.items():
        lines[line - 1][column] = value
    write("iris.csv", "\n".join(",".join(cells) for cells in lines) + "\n")


def iris_splits(write, tmp_path, odd):
    iris_csv(write, odd)
    return load_splits(DataConfig(source="iris.csv", split={"validation": 0, "test": 0}), ["label"], tmp_path)


def test_stray_text_in_a_numeric_column_stops_the_run_whatever_on_fail(write, tmp_path):
    from danlu.tasks.tabular.preprocess import Preprocessing

    splits = iris_splits(write, tmp_path, {(6, 0): "?", (41, 2): "abc"})
    assert splits.categorical == []  # was [sepal_length, petal_length]: a one-hot block each instead of a number
    report = check_quality(splits, QualityConfig(on_fail="warn"), ["label"], True)
    invalid = rule(report, "invalid")
    assert not invalid.passed and invalid.fatal and invalid.observed == 2
    assert invalid.examples == ["train:6", "train:41"]
    assert "feature 'sepal_length': 1 (first '?' at train:6)" in invalid.message
    assert "feature 'petal_length': 1 (first 'abc' at train:41)" in invalid.message
    assert "set it to drop" in invalid.message and "data.categorical" in invalid.message
    with pytest.raises(DataError, match=r"(?s)invalid: 2 values in numeric columns are not a finite number.*"
                                        r"quality.on_fail: warn does not cover invalid"):
        enforce(report, "warn")
    train = splits.frames["train"]
    assert all(pd.api.types.is_float_dtype(train[c]) for c in IRIS)
    assert Preprocessing.fit(train, IRIS, []).width == 4


def test_invalid_cells_are_imputed_or_their_rows_dropped_as_the_recipe_says(write, tmp_path):
    from danlu.tasks.tabular.preprocess import Preprocessing

    odd = {(6, 0): "?", (41, 2): "abc", (42, 3): "inf", (43, 1): "1e300", (44, 0): "9" * 5000}
    splits = iris_splits(write, tmp_path, odd)
    report = check_quality(splits, QualityConfig(invalid="impute"), ["label"], True)
    invalid = rule(report, "invalid")
    assert invalid.passed and not report.failures and invalid.count == 5 and "training mean" in invalid.message
    train = splits.frames["train"]
    assert len(train) == 150 and train[IRIS].isna().sum().sum() == 5
    assert np.isfinite(Preprocessing.fit(train, IRIS, []).transform(train)).all()

    splits = iris_splits(write, tmp_path, odd)
    report = check_quality(splits, QualityConfig(invalid="drop"), ["label"], True)
    assert rule(report, "invalid").passed and "rows are dropped" in rule(report, "invalid").message
    assert splits.dropped == {"train": {"invalid feature": [6, 41, 42, 43, 44]}}
    assert len(splits.frames["train"]) == 145 and np.isfinite(splits.frames["train"][IRIS].to_numpy()).all()


def test_gaps_spelled_out_are_missing_values_not_invalid_ones(write, tmp_path):
    splits = iris_splits(write, tmp_path, {(7, 1): "NaN", (8, 3): "null", (9, 0): "N/A"})
    assert splits.categorical == []
    report = check_quality(splits, QualityConfig(max_missing=0.1), ["label"], True)
    assert rule(report, "missing").count == 3 and rule(report, "invalid").count == 0
    assert sorted(splits.dropped["train"]["missing feature"]) == [7, 8, 9] and list(splits.dropped["train"]) == [
        "missing feature"]


def test_labels_spelled_as_missing_values_are_missing_labels_not_classes(write, tmp_path):
    splits = iris_splits(write, tmp_path, {(11, 4): "NaN", (12, 4): "null", (13, 4): "None", (14, 4): " N/A "})
    report = check_quality(splits, QualityConfig(max_missing=0.1), ["label"], True)
    assert set(report.labels["train"]) == {"setosa", "versicolor", "virginica"}
    assert splits.dropped == {"train": {"missing label": [11, 12, 13, 14]}}
    texts = text_splits(write, tmp_path, ["a,pos", "b,neg", "c,NaN", "d,null", "e,pos", "f,neg"])
    report = check_quality(texts, QualityConfig(max_missing=0.5), TEXT, True)
    assert report.labels["train"] == {"neg": 2, "pos": 2} and rule(report, "missing").count == 2


@pytest.mark.parametrize("choice", ["stop", "drop"])
def test_regression_labels_that_are_no_finite_number_are_reported_with_their_rows(write, tmp_path, choice):
    write("r.csv", "x,label\n1,1.5\n2,abc\n3,inf\n4,1e300\n5,2.5\n6,\n7,3.5\n")
    splits = load_splits(DataConfig(source="r.csv", split={"validation": 0, "test": 0}), ["label"], tmp_path,
                         classification=False)
    report = check_quality(splits, QualityConfig(max_missing=0.5, invalid=choice), ["label"], False)
    invalid = rule(report, "invalid")
    assert invalid.count == 3 and invalid.examples == ["train:3", "train:4", "train:5"]
    assert "label: 3 (first 'abc' at train:3)" in invalid.message
    assert splits.dropped["train"] == {"missing label": [7], "invalid label": [3, 4, 5]}
    assert splits.frames["train"]["label"].tolist() == [1.5, 2.5, 3.5]
    if choice == "stop":
        with pytest.raises(DataError, match=r"invalid: 3 values"):
            enforce(report, "warn")
    else:
        assert invalid.passed and enforce(report, "stop") == []


def test_a_jsonl_regression_label_past_float64_is_invalid(write, tmp_path):
    write("r.jsonl", '{"text": "a", "label": 1.5}\n{"text": "b", "label": ' + "1" * 400 + '}\n'
                     '{"text": "c", "label": 2}\n')
    splits = load_splits(DataConfig(source="r.jsonl", split={"validation": 0, "test": 0}), TEXT, tmp_path,
                         classification=False)
    report = check_quality(splits, QualityConfig(invalid="drop"), TEXT, False)
    assert rule(report, "invalid").examples == ["train:2"] and splits.frames["train"]["label"].tolist() == [1.5, 2.0]


def test_infinity_in_a_tabular_feature_is_invalid(write, tmp_path):
    write("t.csv", "x,y,label\n1,0.5,a\n2,inf,b\n3,-inf,a\n4,2.5,b\n")
    splits = load_splits(DataConfig(source="t.csv", split={"validation": 0, "test": 0}), ["label"], tmp_path)
    assert splits.categorical == []
    report = check_quality(splits, QualityConfig(min_class_count=0), ["label"], True)
    invalid = rule(report, "invalid")
    assert not invalid.passed and invalid.examples == ["train:3", "train:4"]
    assert "feature 'y': 2 (first inf at train:3)" in invalid.message


def test_a_single_class_training_set_stops_even_with_on_fail_warn(write, tmp_path):
    report = check_quality(text_splits(write, tmp_path, ["a,x", "b,x"]), QualityConfig(on_fail="warn"), TEXT, True)
    with pytest.raises(DataError, match=r"(?s)classes: train has 1 class; a classifier needs at least 2.*"
                                        r"quality.on_fail: warn does not cover classes"):
        enforce(report, "warn")


def test_no_training_rows_left_stops_even_with_on_fail_warn(write, tmp_path):
    splits = text_splits(write, tmp_path, ["a,", "b,"])
    report = check_quality(splits, QualityConfig(on_fail="warn", max_missing=1.0), TEXT, False)
    assert rule(report, "train_rows").fatal
    with pytest.raises(DataError, match=r"train_rows: no training rows are left"):
        enforce(report, "warn")


def test_labels_of_mixed_json_types_are_one_set_of_classes(write, tmp_path):
    write("a.jsonl", "\n".join(f'{{"text": "t{i}", "label": {v}}}' for i, v in enumerate(['1', '"1"', '0', '"0"']))
          + "\n")
    splits = load_splits(DataConfig(source="a.jsonl", split={"validation": 0, "test": 0}), TEXT, tmp_path)
    report = check_quality(splits, QualityConfig(min_class_count=0), TEXT, True)
    assert report.labels["train"] == {"0": 2, "1": 2}


# -- images that attack or mislead the decoder ----------------------------------------------------

def header_only_png(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels, as a decompression bomb does."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bombs_are_unreadable_images(image_folder):
    root = image_folder({"cat": 3, "dog": 3})
    (root / "cat" / "bomb.png").write_bytes(header_only_png(40_000, 40_000))  # past PIL's error limit
    (root / "dog" / "bomb.png").write_bytes(header_only_png(10_000, 10_000))  # between PIL's warning and its error
    splits = load_splits(DataConfig(train=str(root), split={"validation": 0, "test": 0}), ["image", "label"], None)
    report = check_quality(splits, QualityConfig(max_unreadable=5), ["image", "label"], True)
    unreadable = rule(report, "unreadable")
    assert unreadable.passed and unreadable.count == 2 and "decompression bomb" in unreadable.message
    assert splits.dropped == {"train": {"unreadable image": [4, 8]}}


def test_a_jpeg_missing_its_last_bytes_is_unreadable(tmp_path):
    from PIL import Image

    from danlu.data.images import image_fingerprint

    path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, quality=90)
    whole = path.read_bytes()
    assert image_fingerprint(str(path))[1] is None
    path.write_bytes(whole[:-200])
    assert image_fingerprint(str(path))[0] is None and "truncated" in image_fingerprint(str(path))[1]


# -- what the report says -------------------------------------------------------------------------

def test_chinese_text_lengths_are_in_characters_and_the_report_says_so(write, tmp_path):
    rows = ["床前明月光，疑是地上霜。,1", "举头望明月，低头思故乡。,0", "白日依山尽,1"]
    report = check_quality(text_splits(write, tmp_path, rows), QualityConfig(min_class_count=0), TEXT, True)
    stats = report.text_lengths["train"]
    assert set(stats) == {"chars"} and stats["chars"]["max"] == 12 and stats["chars"]["min"] == 5
    assert any("in characters only" in note for note in report.notes)
    markdown = report.to_markdown()
    assert "| train | characters | 5 |" in markdown and "words (split" not in markdown
    english = check_quality(text_splits(write, tmp_path, ["a good movie,1", "bad,0"]), QualityConfig(min_class_count=0),
                            TEXT, True)
    assert "| train | words (split on whitespace) | 1 |" in english.to_markdown()


def test_the_report_says_from_how_many_rows_a_limit_sample_was_drawn(write, tmp_path):
    rows = [f"sentence {i},{'pos' if i % 5 == 0 else 'neg'}" for i in range(300)]
    write("data.csv", "text,label\n" + "\n".join(rows) + "\n")
    splits = load_splits(DataConfig(source="data.csv", limit={"train": 50}), TEXT, tmp_path)
    report = check_quality(splits, QualityConfig(), TEXT, True)
    assert report.counts["train"] == {"read": 50, "kept": 50, "sampled_from": 210}
    markdown = report.to_markdown()
    assert "| train | 50 (sampled from 210) | 50 | 0 |" in markdown
    assert "train: 50 rows sampled from 210 (data.limit.train, seed 42)" in markdown


def test_a_nan_that_is_no_gap_spelling_is_invalid_not_silently_a_gap(write, tmp_path):
    splits = iris_splits(write, tmp_path, {(6, 0): "-nan", (7, 0): "?"})
    report = check_quality(splits, QualityConfig(invalid="impute"), ["label"], True)
    assert rule(report, "invalid").count == 2 and rule(report, "missing").count == 0
