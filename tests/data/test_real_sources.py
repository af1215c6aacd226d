"""The shared real datasets read as their SOURCE.md files describe them."""

from __future__ import annotations

import time

import numpy as np
import pytest

from danlu.data import DataConfig, QualityConfig, check_quality, data_root, enforce, load_splits

pytestmark = pytest.mark.real


def need(folder: str):
    root = data_root()
    if root is None or not (root / folder).is_dir():
        pytest.skip(f"real dataset '{folder}' not found: set DANLU_DATA or put the shared datasets "
                    "in ../shared/datasets beside the repo")


def test_sst2_train_and_dev_with_column_candidates():
    need("sst2")
    data = DataConfig(train="sst2/train.tsv", validation="sst2/dev.tsv", columns={"text": ["sentence", "content"]},
                      split={"test": 0})
    splits = load_splits(data, ["text", "label"], None)
    assert splits.sizes() == {"train": 67_349, "validation": 872}
    assert splits.frames["train"]["label"].value_counts().to_dict() == {1: 37_569, 0: 29_780}
    assert splits.frames["validation"]["_row"].iloc[0] == 2
    start = time.perf_counter()
    report = check_quality(splits, QualityConfig(), ["text", "label"], True)
    assert time.perf_counter() - start < 10
    assert report.passed, enforce(report, "warn")
    assert report.labels["validation"] == {"0": 428, "1": 444}


def test_sst2_test_file_overlaps_train_by_one_sentence():
    need("sst2")
    data = DataConfig(train="sst2/train.tsv", test="sst2/test.tsv", columns={"text": ["sentence", "content"]},
                      split={"validation": 0})
    report = check_quality(load_splits(data, ["text", "label"], None), QualityConfig(), ["text", "label"], True)
    leakage = next(r for r in report.rules if r.name == "leakage")
    assert leakage.count == 1 and leakage.examples == ["test:1452"]  # "what 's next ?" is also train line 26226


def test_mnist_idx_ordered_split():
    need("mnist")
    data = DataConfig(source={"images": "mnist/t10k-images-idx3-ubyte.gz", "labels": "mnist/t10k-labels-idx1-ubyte.gz"},
                      split={"shuffle": False, "validation": 0, "test": 2000})
    splits = load_splits(data, ["image", "label"], None)
    assert splits.sizes() == {"train": 8000, "test": 2000}
    first = splits.frames["train"]["image"].iloc[0]
    assert isinstance(first, np.ndarray) and first.shape == (28, 28) and first.dtype == np.uint8
    assert splits.frames["test"]["_row"].tolist()[:1] == [8001] and splits.frames["test"]["_row"].iloc[-1] == 10_000
    counts = {**splits.frames["train"]["label"].value_counts().to_dict()}
    for label, n in splits.frames["test"]["label"].value_counts().items():
        counts[label] = counts.get(label, 0) + n
    assert counts == {0: 980, 1: 1135, 2: 1032, 3: 1010, 4: 982, 5: 892, 6: 958, 7: 1028, 8: 974, 9: 1009}
    report = check_quality(splits, QualityConfig(), ["image", "label"], True)
    assert next(r for r in report.rules if r.name == "unreadable").count == 0


def test_cifar10_subset_as_image_folders():
    need("cifar10_subset")
    data = DataConfig(train="cifar10_subset/train", test="cifar10_subset/test", split={"validation": 0})
    splits = load_splits(data, ["image", "label"], None)
    assert splits.sizes() == {"train": 2000, "test": 1000}
    assert splits.frames["train"]["label"].value_counts().to_dict() == {name: 200 for name in (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")}
    start = time.perf_counter()
    report = check_quality(splits, QualityConfig(), ["image", "label"], True)
    assert time.perf_counter() - start < 10  # 3,000 JPEGs opened and hashed
    assert report.passed, enforce(report, "warn")


def test_cifar10_subset_via_labels_csv_and_split_column():
    need("cifar10_subset")
    data = DataConfig(source="cifar10_subset/labels.csv", columns={"image": "path", "label": "class_name"},
                      split_column="split", split={"validation": 0.1})
    splits = load_splits(data, ["image", "label"], None)
    assert splits.sizes() == {"train": 1800, "validation": 200, "test": 1000}
    assert splits.frames["validation"]["label"].value_counts().to_dict() == {name: 20 for name in (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")}
    folders = load_splits(DataConfig(train="cifar10_subset/train", test="cifar10_subset/test", split={"validation": 0}),
                          ["image", "label"], None)
    assert set(splits.frames["test"]["image"]) == set(folders.frames["test"]["image"])  # same files, absolute paths
    report = check_quality(splits, QualityConfig(), ["image", "label"], True)
    assert report.passed, enforce(report, "warn")


def test_german_credit_without_header():
    need("german_credit")
    names = [f"a{i}" for i in range(1, 21)] + ["credit"]
    data = DataConfig(source="german_credit/german.csv", column_names=names, columns={"label": "credit"})
    splits = load_splits(data, ["label"], None)
    assert sum(splits.sizes().values()) == 1000 and splits.sizes()["test"] == 200
    assert splits.features == names[:-1]
    assert splits.categorical == ["a1", "a3", "a4", "a6", "a7", "a9", "a10", "a12", "a14", "a15", "a17", "a19", "a20"]
    train = splits.frames["train"]
    assert train["label"].value_counts().to_dict() == {1: 490, 2: 210}  # 70/30 kept by stratification
    assert train["a2"].dtype.kind == "i" and train["_row"].min() >= 1
    report = check_quality(splits, QualityConfig(), ["label"], True)
    assert report.passed, enforce(report, "warn")
