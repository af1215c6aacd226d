"""Reading every source form: values, row numbers, and the errors a user sees for bad files."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from danlu.data import DataConfig, data_root, resolve_data_path
from danlu.data.sources import read_source
from danlu.errors import DataError


def read(source, tmp_path, **config):
    return read_source(source, DataConfig(source=source, **config), tmp_path)


def test_csv_values_numbers_and_line_numbers(write, tmp_path):
    write("a.csv", 'text,label,score\n"hello, world",pos,1.5\nbye,neg,2\n')
    frame = read("a.csv", tmp_path)
    assert frame["text"].tolist() == ["hello, world", "bye"]  # csv quoting honoured
    assert frame["label"].tolist() == ["pos", "neg"]
    assert frame["score"].tolist() == [1.5, 2.0] and pd.api.types.is_float_dtype(frame["score"])
    assert frame["_row"].tolist() == [2, 3]  # the header is line 1
    assert frame["_source"].iloc[0] == str(tmp_path / "a.csv")


def test_multiline_quoted_field_keeps_its_starting_line(write, tmp_path):
    write("a.csv", 'text,label\n"two\nlines",1\nnext,0\n')
    frame = read("a.csv", tmp_path)
    assert frame["text"].tolist() == ["two\nlines", "next"]
    assert frame["_row"].tolist() == [2, 4]


def test_tsv_keeps_quotes_inside_sentences(write, tmp_path):
    write("a.tsv", 'label\tsentence\n1\t"the " best movie\n0\tit \'s "fine\n')
    frame = read("a.tsv", tmp_path)
    assert frame["sentence"].tolist() == ['"the " best movie', 'it \'s "fine']
    assert frame["label"].tolist() == [1, 0]


def test_headerless_csv_with_column_names(write, tmp_path):
    write("g.csv", "A11,6,1\nA12,48,2\n")
    frame = read("g.csv", tmp_path, column_names=["status", "months", "label"])
    assert list(frame.columns[:3]) == ["status", "months", "label"]
    assert frame["_row"].tolist() == [1, 2]  # no header: the first data row is line 1
    assert frame["months"].tolist() == [6, 48]


def test_headerless_csv_without_names_gets_numbered_columns(write, tmp_path):
    write("g.csv", "x,1\ny,2\n")
    frame = read("g.csv", tmp_path, header=False)
    assert list(frame.columns[:2]) == ["column_1", "column_2"]


def test_column_names_count_must_match(write, tmp_path):
    write("g.csv", "a,b,c\n")
    with pytest.raises(DataError, match=r"g.csv: 1 line does not have 2 fields like column_names: line 1 \(3 fields\)"):
        read("g.csv", tmp_path, column_names=["x", "y"])


def test_malformed_csv_lines_are_reported_with_line_numbers(write, tmp_path):
    rows = ["text,label", "ok,1", "too,many,fields", "fine,0"] + [f"bad{i},1,2" for i in range(6)]
    write("bad.csv", "\n".join(rows) + "\n")
    with pytest.raises(DataError) as err:
        read("bad.csv", tmp_path)
    message = str(err.value)
    assert "bad.csv" in message and "7 lines do not have 2 fields like the header" in message
    assert "line 3 (3 fields)" in message and "line 5 (3 fields)" in message
    assert "and 2 more" in message and "Traceback" not in message


def test_bad_jsonl_line_is_reported(write, tmp_path):
    write("a.jsonl", '{"text": "a", "label": 1}\n{"text": "b", label: 0}\n\n[1, 2]\n')
    with pytest.raises(DataError, match=r"a.jsonl: 2 lines are not JSON objects: line 2 \(.*\), line 4 \(a list"):
        read("a.jsonl", tmp_path)


def test_jsonl_keeps_types_and_line_numbers(write, tmp_path):
    write("a.jsonl", '{"text": "a", "label": "1"}\n\n{"text": "b", "label": "0", "extra": [1]}\n')
    frame = read("a.jsonl", tmp_path)
    assert frame["label"].tolist() == ["1", "0"]  # JSON says string: stays a string
    assert frame["_row"].tolist() == [1, 3]


@pytest.mark.parametrize("content", ["", "text,label\n", "\n\n"])
def test_empty_csv_is_an_error(write, tmp_path, content):
    write("e.csv", content)
    with pytest.raises(DataError, match=r"e.csv is empty"):
        read("e.csv", tmp_path)


@pytest.mark.parametrize("name", ["e.jsonl", "e.json", "e.txt"])
def test_empty_other_files_are_errors(write, tmp_path, name):
    write(name, "")
    with pytest.raises(DataError, match=rf"{name} is empty"):
        read(name, tmp_path)


def test_json_array_and_wrapped_array(write, tmp_path):
    write("a.json", json.dumps([{"text": "a", "label": 1}, {"text": "b", "label": 0}]))
    write("b.json", json.dumps({"data": [{"text": "a", "label": 1}]}))
    assert read("a.json", tmp_path)["_row"].tolist() == [1, 2]
    assert read("b.json", tmp_path)["text"].tolist() == ["a"]


def test_invalid_json_names_the_line(write, tmp_path):
    write("a.json", '[\n{"text": "a"},\n{"text": }\n]')
    with pytest.raises(DataError, match=r"a.json: invalid JSON at line 3"):
        read("a.json", tmp_path)


def test_parquet(tmp_path):
    pd.DataFrame({"text": ["a", "b"], "label": [0, 1]}).to_parquet(tmp_path / "a.parquet")
    frame = read("a.parquet", tmp_path)
    assert frame["label"].tolist() == [0, 1] and frame["_row"].tolist() == [1, 2]


def test_txt_one_example_per_line_and_gzip(tmp_path):
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(b"first line\n\nthird line\n"))
    frame = read("a.txt.gz", tmp_path)
    assert frame["text"].tolist() == ["first line", "third line"]
    assert frame["_row"].tolist() == [1, 3]


def test_non_utf8_file_names_the_line(write, tmp_path):
    write("a.csv", b"text,label\nok,1\ncaf\xe9,0\n")
    with pytest.raises(DataError, match=r"a.csv: line 3 is not valid UTF-8"):
        read("a.csv", tmp_path)


def test_unknown_extension(write, tmp_path):
    write("a.xlsx", "x")
    with pytest.raises(DataError, match=r"cannot tell the format .*'.xlsx'"):
        read("a.xlsx", tmp_path)
    write("b.data", "x,1\ny,0\n")
    assert len(read("b.data", tmp_path, format="csv", header=False)) == 2  # an explicit format wins


def test_imagefolder_lists_images_with_class_labels(image_folder, tmp_path):
    root = image_folder({"cat": 2, "dog": 3})
    (root / "dog" / "notes.txt").write_text("not an image")
    frame = read("imgs", tmp_path)
    assert frame["label"].tolist() == ["cat", "cat", "dog", "dog", "dog"]
    assert frame["image"].iloc[0] == str(root / "cat" / "000.jpg")
    assert frame["_row"].tolist() == [1, 2, 3, 4, 5]


def test_imagefolder_with_split_subfolders(image_folder, tmp_path):
    image_folder({"cat": 2, "dog": 2}, root="ds/train")
    image_folder({"cat": 1, "dog": 1}, root="ds/test")
    got = read("ds", tmp_path)
    assert set(got) == {"train", "test"} and len(got["train"]) == 4 and len(got["test"]) == 2


def test_empty_imagefolder(tmp_path):
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no images found"):
        read("imgs", tmp_path)


def test_image_csv_resolves_paths_relative_to_the_csv(image_folder, write, tmp_path):
    image_folder({"cat": 1, "dog": 1}, root="set/imgs")
    write("set/index.csv", "path,label\nimgs/cat/000.jpg,0\nimgs/dog/000.jpg,1\n")
    frame = read("set/index.csv", tmp_path, columns={"image": "path"})
    assert frame["path"].tolist() == [str(tmp_path / "set/imgs/cat/000.jpg"), str(tmp_path / "set/imgs/dog/000.jpg")]
    with pytest.raises(DataError, match=r"image_csv needs a column of image paths .* columns are: path, label"):
        read("set/index.csv", tmp_path, format="image_csv")


def test_idx_pair_reads_arrays_and_labels(idx_files, tmp_path):
    images, labels = idx_files(12)
    frame = read({"images": images.name, "labels": labels.name}, tmp_path)
    assert len(frame) == 12 and frame["label"].tolist()[:3] == [0, 1, 2]
    first = frame["image"].iloc[5]
    assert isinstance(first, np.ndarray) and first.shape == (28, 28) and first.dtype == np.uint8
    assert first[0, 0] == 5 and first.flags.writeable
    assert frame["_row"].tolist()[:2] == [1, 2]


def test_idx_count_mismatch(idx_files, tmp_path):
    images, labels = idx_files(12, label_count=10)
    with pytest.raises(DataError, match=r"has 10 labels .* has 12 images"):
        read({"images": str(images), "labels": str(labels)}, tmp_path)


def test_builtin_sets_have_named_features_and_labels():
    cancer = read_source("builtin:breast_cancer", DataConfig(source="builtin:breast_cancer"), None)
    assert set(cancer["label"]) == {"malignant", "benign"} and "mean radius" in cancer.columns
    digits = read_source("builtin:digits", DataConfig(source="builtin:digits"), None)
    assert "pixel_0" in digits and "pixel_63" in digits and sorted(set(digits["label"])) == list(range(10))
    with pytest.raises(DataError, match=r"unknown builtin dataset 'irsi'.*did you mean 'iris'"):
        read_source("builtin:irsi", DataConfig(source="builtin:irsi"), None)


def test_resolve_tries_recipe_dir_then_data_root(tmp_path, monkeypatch):
    (tmp_path / "root" / "set").mkdir(parents=True)
    (tmp_path / "root" / "set" / "train.csv").write_text("a\n1\n")
    monkeypatch.setenv("DANLU_DATA", str(tmp_path / "root"))
    assert data_root() == tmp_path / "root"
    assert resolve_data_path("set/train.csv", tmp_path / "recipes") == tmp_path / "root" / "set" / "train.csv"
    with pytest.raises(DataError) as err:
        resolve_data_path("set/trian.csv", tmp_path / "recipes")
    assert "tried:" in str(err.value) and str(tmp_path / "recipes" / "set/trian.csv") in str(err.value)
    assert "did you mean 'set/train.csv'?" in str(err.value)


def test_a_numeric_column_with_gaps_spelled_out_stays_numeric(write, tmp_path):
    write("a.csv", "x,label\n1.5,a\nNaN,b\nnull,a\n N/A ,b\nNone,a\nna,b\n2,a\n")
    frame = read("a.csv", tmp_path)
    assert pd.api.types.is_float_dtype(frame["x"])
    assert frame["x"].isna().tolist() == [False, True, True, True, True, True, False]


def test_a_numeric_column_with_stray_text_keeps_its_text_for_the_gate(write, tmp_path):
    write("a.csv", "x,label\n1.5,a\n?,b\nabc,a\n2,b\n")
    assert read("a.csv", tmp_path)["x"].tolist() == ["1.5", "?", "abc", "2"]


@pytest.mark.parametrize("value, why", [
    ("[" * 100_000 + "]" * 100_000, r"line 2 \(nested too deeply\)"),
    ("9" * 5000, r"line 2 \(an integer too long to read\)"),
    ('"\\ud800"', r"line 2 \(a \\u escape that is half of a UTF-16 surrogate pair"),
])
def test_jsonl_values_python_cannot_hold_name_their_line(write, tmp_path, value, why):
    write("a.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": ' + value + '}\n')
    with pytest.raises(DataError, match=rf"a.jsonl: 1 line is not a JSON object: {why}"):
        read("a.jsonl", tmp_path)


def test_json_nested_too_deeply_is_a_data_error(write, tmp_path):
    write("a.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"a.json: invalid JSON: nested too deeply"):
        read("a.json", tmp_path)


def test_a_surrogate_pair_escape_is_one_character(write, tmp_path):
    write("a.jsonl", '{"text": "smile \\ud83d\\ude00", "label": 1}\n')
    assert read("a.jsonl", tmp_path)["text"].tolist() == ["smile \U0001F600"]
