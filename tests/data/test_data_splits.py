"""Column roles, splitting, limits, k-fold, load_frame and hub sources."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydantic
import pytest

from danlu.data import DataConfig, kfold_indices, load_frame, load_splits
from danlu.errors import DataError


def labelled_csv(write, name="data.csv", n=100, positive_share=0.3, extra=""):
    lines = ["text,label" + (",split" if extra else "")]
    for i in range(n):
        label = "pos" if i < n * positive_share else "neg"
        lines.append(f"sentence number {i},{label}" + (f",{extra(i)}" if extra else ""))
    return write(name, "\n".join(lines) + "\n")


def test_column_candidates_take_the_first_that_exists(write, tmp_path):
    write("train.tsv", "label\tsentence\n1\tgood\n0\tbad\n1\tfine\n0\tpoor\n")
    write("dev.tsv", "label\tcontent\n1\tnice\n0\tawful\n")
    data = DataConfig(train="train.tsv", validation="dev.tsv", test="dev.tsv",
                      columns={"text": ["sentence", "content"]})
    splits = load_splits(data, ["text", "label"], tmp_path)
    assert splits.frames["train"]["text"].tolist() == ["good", "bad", "fine", "poor"]
    assert splits.frames["validation"]["text"].tolist() == ["nice", "awful"]
    assert list(splits.frames["train"].columns) == ["text", "label", "_row", "_source"]


def test_missing_column_names_file_columns_and_suggestion(write, tmp_path):
    write("train.tsv", "label\tsentence\n1\tgood\n0\tbad\n")
    write("dev.tsv", "label\tcontent\n1\tnice\n")
    data = DataConfig(train="train.tsv", validation="dev.tsv", columns={"text": "sentense"})
    with pytest.raises(DataError) as err:
        load_splits(data, ["text", "label"], tmp_path)
    assert str(err.value) == (f"{tmp_path / 'train.tsv'}: no column 'sentense' for role text; "
                              "columns are: label, sentence; did you mean 'sentence'?")
    data = DataConfig(train="dev.tsv", columns={"text": "sentense"})
    with pytest.raises(DataError, match=r"dev.tsv: no column 'sentense' .* columns are: label, content; "
                                        r"set data.columns.text"):
        load_splits(data, ["text", "label"], tmp_path)


def test_stratified_split_proportions_and_determinism(write, tmp_path):
    labelled_csv(write, n=200, positive_share=0.3)
    data = DataConfig(source="data.csv", split={"validation": 0.1, "test": 0.2})
    first = load_splits(data, ["text", "label"], tmp_path)
    assert first.sizes() == {"train": 140, "validation": 20, "test": 40}
    for frame in first.frames.values():  # each split keeps the 30 % positive share
        assert (frame["label"] == "pos").mean() == pytest.approx(0.3)
    rows = {s: f["_row"].tolist() for s, f in first.frames.items()}
    assert sorted(sum(rows.values(), [])) == list(range(2, 202))  # every row exactly once
    again = load_splits(data, ["text", "label"], tmp_path)
    assert {s: f["_row"].tolist() for s, f in again.frames.items()} == rows
    other = load_splits(data, ["text", "label"], tmp_path, seed=7)
    assert other.frames["test"]["_row"].tolist() != rows["test"]


def test_integer_sizes_are_row_counts(write, tmp_path):
    labelled_csv(write, n=50)
    data = DataConfig(source="data.csv", split={"validation": 5, "test": 10})
    splits = load_splits(data, ["text", "label"], tmp_path)
    assert splits.sizes() == {"train": 35, "validation": 5, "test": 10}


def test_ordered_split_takes_test_from_the_end(write, tmp_path):
    labelled_csv(write, n=100)
    data = DataConfig(source="data.csv", split={"shuffle": False, "validation": 10, "test": 20})
    splits = load_splits(data, ["text", "label"], tmp_path)
    assert splits.frames["train"]["_row"].tolist() == list(range(2, 72))
    assert splits.frames["validation"]["_row"].tolist() == list(range(72, 82))
    assert splits.frames["test"]["_row"].tolist() == list(range(82, 102))


def test_explicit_splits_are_not_resplit_and_validation_comes_from_train(write, tmp_path):
    labelled_csv(write, "train.csv", n=100)
    labelled_csv(write, "test.csv", n=30)
    splits = load_splits(DataConfig(train="train.csv", test="test.csv"), ["text", "label"], tmp_path)
    assert splits.sizes() == {"train": 90, "validation": 10, "test": 30}


def test_split_too_large(write, tmp_path):
    labelled_csv(write, n=10)
    with pytest.raises(DataError, match=r"validation \(5\) \+ test \(5\) rows would take all 10 rows"):
        load_splits(DataConfig(source="data.csv", split={"validation": 5, "test": 5}), ["text", "label"], tmp_path)


def test_split_column(write, tmp_path):
    labelled_csv(write, n=40, extra=lambda i: "test" if i % 4 == 0 else "train")
    data = DataConfig(source="data.csv", split_column="split", split={"validation": 0})
    splits = load_splits(data, ["text", "label"], tmp_path)
    assert splits.sizes() == {"train": 30, "test": 10}
    assert "split" not in splits.frames["train"].columns
    with pytest.raises(DataError, match=r"no column 'splt' \(data.split_column\).*did you mean 'split'"):
        load_splits(DataConfig(source="data.csv", split_column="splt"), ["text", "label"], tmp_path)
    labelled_csv(write, "odd.csv", n=8, extra=lambda i: "holdout" if i == 3 else "train")
    with pytest.raises(DataError, match=r"1 rows have a split value that is not a split \(holdout\), e.g. line 5"):
        load_splits(DataConfig(source="odd.csv", split_column="split"), ["text", "label"], tmp_path)


def test_limits_cap_rows_and_keep_classes(write, tmp_path):
    labelled_csv(write, n=300, positive_share=0.2)
    data = DataConfig(source="data.csv", limit={"train": 50, "test": 10})
    splits = load_splits(data, ["text", "label"], tmp_path)
    assert len(splits.frames["train"]) == 50 and len(splits.frames["test"]) == 10
    assert (splits.frames["train"]["label"] == "pos").sum() == 10  # still 20 %
    assert splits.frames["train"]["_row"].is_monotonic_increasing
    again = load_splits(data, ["text", "label"], tmp_path)
    assert again.frames["train"]["_row"].tolist() == splits.frames["train"]["_row"].tolist()


def test_tabular_features_and_inferred_categoricals(write, tmp_path):
    lines = ["color,size,weight,label"] + [f"{c},{i},{i * 1.5},{i % 2}" for i, c in
                                           zip(range(30), ["red", "blue", "green"] * 10)]
    write("t.csv", "\n".join(lines) + "\n")
    splits = load_splits(DataConfig(source="t.csv"), ["label"], tmp_path)
    assert splits.features == ["color", "size", "weight"] and splits.categorical == ["color"]
    chosen = load_splits(DataConfig(source="t.csv", features=["size", "color"], categorical=["size", "color"]),
                         ["label"], tmp_path)
    assert chosen.features == ["size", "color"] and chosen.categorical == ["size", "color"]
    assert "weight" not in chosen.frames["train"]
    with pytest.raises(DataError, match=r"no feature column 'colour'.*did you mean 'color'"):
        load_splits(DataConfig(source="t.csv", features=["colour"]), ["label"], tmp_path)


def test_kfold_is_stratified_and_deterministic():
    labels = ["a"] * 30 + ["b"] * 10
    folds = kfold_indices(labels, 5, seed=1, stratify=True)
    assert len(folds) == 5
    seen = np.sort(np.concatenate([val for _, val in folds]))
    assert seen.tolist() == list(range(40))
    for train, val in folds:
        assert len(set(train) & set(val)) == 0
        assert sum(labels[i] == "b" for i in val) == 2
    again = kfold_indices(labels, 5, seed=1, stratify=True)
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again))
    with pytest.raises(DataError, match=r"2 <= k"):
        kfold_indices(labels, 1, seed=1)


def test_load_frame_maps_columns_and_allows_missing_labels(write, tmp_path):
    write("new.tsv", "content\nsome text\nmore text\n")
    data = DataConfig(source="x.tsv", columns={"text": ["sentence", "content"]})
    frame = load_frame("new.tsv", data, ["text", "label"], tmp_path, allow_missing=["label"])
    assert frame["text"].tolist() == ["some text", "more text"] and "label" not in frame
    with pytest.raises(DataError, match=r"no column 'label' for role label"):
        load_frame("new.tsv", data, ["text", "label"], tmp_path)


def test_hub_source_via_load_dataset(monkeypatch, tmp_path):
    import datasets

    calls = {}

    def fake_load_dataset(path, **kwargs):
        calls.update(path=path, **kwargs)
        make = lambda n: datasets.Dataset.from_dict({"sentence": [f"s{i}" for i in range(n)],  # noqa: E731
                                                     "label": [i % 2 for i in range(n)]})
        return datasets.DatasetDict({"train": make(20), "dev": make(6), "unsupervised": make(3)})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = DataConfig(source="hub:glue", hub={"name": "sst2", "revision": "abc"},
                      columns={"text": "sentence"}, split={"test": 0})
    splits = load_splits(data, ["text", "label"], tmp_path)
    assert calls == {"path": "glue", "name": "sst2", "revision": "abc"}
    assert splits.sizes() == {"train": 20, "validation": 6}  # dev -> validation; test 0 = none carved
    assert splits.frames["validation"]["_source"].iloc[0] == "hub:glue[dev]"
    data = DataConfig(source="hub:glue", hub={"splits": {"test": "tset"}})
    with pytest.raises(DataError, match=r"no split 'tset'.*splits are: train, dev, unsupervised"):
        load_splits(data, ["text", "label"], tmp_path)


def test_hub_load_failure_is_a_data_error(monkeypatch, tmp_path):
    import datasets

    def broken(path, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", broken)
    with pytest.raises(DataError, match=r"hub:nope: could not load .*offline"):
        load_splits(DataConfig(source="hub:nope"), ["text", "label"], tmp_path)


@pytest.mark.parametrize("bad", [
    {"source": "a.csv", "colums": {}},
    {"source": "a.csv", "split": {"test": 1.5}},
    {"source": "a.csv", "limit": {"trian": 5}},
    {"source": "a.csv", "train": "b.csv"},
    {"source": {"image": "x"}},
    {"source": "a.csv", "format": "cvs"},
])
def test_config_rejects_mistakes(bad):
    with pytest.raises(pydantic.ValidationError):
        DataConfig(**bad)


def test_column_names_imply_no_header():
    assert DataConfig(source="a.csv", column_names=["a"]).header is False
    assert DataConfig(source="a.csv", column_names=["a"], header=True).header is True


def test_frames_are_plain_pandas(write, tmp_path):
    labelled_csv(write, n=20)
    splits = load_splits(DataConfig(source="data.csv"), ["text", "label"], tmp_path)
    assert all(isinstance(f, pd.DataFrame) and f.index.tolist() == list(range(len(f)))
               for f in splits.frames.values())


def test_test_file_missing_a_training_feature(write, tmp_path):
    write("train.csv", "age,city,label\n30,paris,1\n40,rome,0\n50,oslo,1\n60,bern,0\n")
    write("test.csv", "age,cty,label\n35,paris,1\n")
    with pytest.raises(DataError, match=r"test.csv: no feature column 'city' \(a feature of the training data\).*"
                                        r"did you mean 'cty'"):
        load_splits(DataConfig(train="train.csv", test="test.csv"), ["label"], tmp_path)


def test_hub_single_split_is_a_pool_that_gets_split(monkeypatch, tmp_path):
    import datasets

    pool = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(50)], "label": [i % 2 for i in range(50)]})
    monkeypatch.setattr(datasets, "load_dataset", lambda path, **kw: pool)
    splits = load_splits(DataConfig(source="hub:x", hub={"split": "train"}), ["text", "label"], tmp_path)
    assert splits.sizes() == {"train": 35, "validation": 5, "test": 10}


def test_a_mostly_numeric_column_is_a_number_feature_not_a_category(write, tmp_path):
    write("t.csv", "x,colour,label\n1,red,a\n?,blue,b\n3,red,a\nabc,blue,b\n5,red,a\n")
    splits = load_splits(DataConfig(source="t.csv", split={"validation": 0, "test": 0}), ["label"], tmp_path)
    assert splits.features == ["x", "colour"] and splits.categorical == ["colour"]


@pytest.mark.parametrize("cell, kind", [("[0]", "list"), ('{"a": 1}', "dict")])
def test_a_label_that_is_not_one_value_names_its_line(write, tmp_path, cell, kind):
    write("a.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", "label": ' + cell + '}\n')
    with pytest.raises(DataError, match=rf"a.jsonl line 3: the label is a {kind}, not a single value \(1 row like"):
        load_splits(DataConfig(source="a.jsonl", split={"validation": 0, "test": 0}), ["text", "label"], tmp_path)
    write("t.jsonl", '{"x": [1, 2], "label": 1}\n{"x": 3, "label": 0}\n')
    with pytest.raises(DataError, match=r"t.jsonl line 1: feature 'x' is a list"):
        load_splits(DataConfig(source="t.jsonl", split={"validation": 0, "test": 0}), ["label"], tmp_path)
    with pytest.raises(DataError, match=r"t.jsonl line 1: feature 'x' is a list"):
        load_frame("t.jsonl", DataConfig(source="t.jsonl"), ["label"], tmp_path)


def test_a_limit_sample_says_how_many_rows_it_was_drawn_from(write, tmp_path):
    labelled_csv(write, n=300, positive_share=0.2)
    splits = load_splits(DataConfig(source="data.csv", limit={"train": 50}), ["text", "label"], tmp_path)
    assert splits.sampled_from == {"train": 210}  # 300 - 30 validation - 60 test
    assert "train: 50 rows sampled from 210 (data.limit.train, seed 42)" in splits.notes


@pytest.mark.parametrize("gap", ["", "NaN", "null"])
def test_a_missing_label_does_not_stop_the_split_from_stratifying(write, tmp_path, gap):
    path = labelled_csv(write, n=200, positive_share=0.3)
    lines = path.read_text().splitlines()
    lines[100] = lines[100].rsplit(",", 1)[0] + "," + gap
    path.write_text("\n".join(lines) + "\n")
    splits = load_splits(DataConfig(source="data.csv", split={"validation": 0.1, "test": 0.2}), ["text", "label"],
                         tmp_path)
    assert not any("not stratified" in note for note in splits.notes)
    assert (splits.frames["test"]["label"] == "pos").sum() == 12  # 30 % of 40, as without the gap
