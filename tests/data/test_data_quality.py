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
    assert {r.name for r in report.rules} == {"missing", "duplicates"}
    assert report.labels == {}


def test_text_length_stats_and_limit(write, tmp_path):
    splits = text_splits(write, tmp_path, ["one two,1", "three four five six,0", "x,1"])
    report = check_quality(splits, QualityConfig(max_text_length=10), TEXT, True)
    stats = report.text_lengths["train"]
    assert stats["tokens"]["min"] == 1 and stats["tokens"]["max"] == 4 and stats["chars"]["max"] == 19
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
