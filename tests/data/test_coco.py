"""COCO and YOLO readers, semantic masks, and the digit-canvas script."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from danlu.data.coco import categories, read_coco, read_yolo, semantic_mask
from danlu.data.config import DataConfig
from danlu.data.sources import read_source
from danlu.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def coco_set(root: Path, annotations: list[dict] | None = None, images: list[dict] | None = None) -> Path:
    """root/images/a.png, b.png (20x10) and root/annotations/instances.json."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    for name in ("a.png", "b.png"):
        Image.new("L", (20, 10)).save(root / "images" / name)
    content = {
        "images": images or [{"id": 1, "file_name": "a.png", "width": 20, "height": 10},
                             {"id": 2, "file_name": "b.png", "width": 20, "height": 10}],
        "annotations": annotations if annotations is not None else [
            {"id": 7, "image_id": 1, "category_id": 3, "bbox": [1, 2, 5, 4], "iscrowd": 0,
             "segmentation": [[1, 2, 6, 2, 6, 6, 1, 6]]}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 1, "name": "dog"}],
    }
    path = root / "annotations" / "instances.json"
    path.write_text(json.dumps(content, indent=1), encoding="utf-8")
    return path


def test_read_coco_rows_objects_and_image_paths(tmp_path):
    path = coco_set(tmp_path)
    frame = read_coco(path)
    assert list(frame.columns) == ["image", "width", "height", "objects", "_row", "_source"]
    assert frame["image"].tolist() == [str((tmp_path / "images" / n).resolve()) for n in ("a.png", "b.png")]
    assert frame["_row"].tolist() == [1, 2] and frame["width"].tolist() == [20, 20]
    assert frame["objects"][0] == [{"bbox": [1.0, 2.0, 5.0, 4.0], "category": "cat", "category_id": 3,
                                    "segmentation": [[1, 2, 6, 2, 6, 6, 1, 6]], "iscrowd": 0, "id": 7}]
    assert frame["objects"][1] == []  # no annotations: kept as a negative
    assert categories(path) == ["dog", "cat"]  # id order


def test_generic_reader_detects_coco_json(tmp_path):
    path = coco_set(tmp_path)
    frame = read_source(str(path), DataConfig(), None)
    assert len(frame) == 2 and "objects" in frame
    assert read_source(str(path), DataConfig(format="coco"), None)["image"].tolist() == frame["image"].tolist()


@pytest.mark.parametrize("annotation, words", [
    ({"id": 9, "image_id": 1, "category_id": 3, "bbox": [15, 2, 8, 4]}, ["annotation 9", "outside", "20x10"]),
    ({"id": 9, "image_id": 5, "category_id": 3, "bbox": [1, 1, 2, 2]}, ["annotation 9", "image_id 5"]),
    ({"id": 9, "image_id": 1, "category_id": 42, "bbox": [1, 1, 2, 2]}, ["annotation 9", "category_id 42"]),
    ({"id": 9, "image_id": 1, "category_id": 3, "bbox": [1, 1, 0, 2]}, ["annotation 9", "no area"]),
])
def test_bad_annotation_names_file_and_annotation(tmp_path, annotation, words):
    path = coco_set(tmp_path, [annotation])
    with pytest.raises(DataError) as err:
        read_coco(path)
    assert "instances.json" in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_box_within_one_pixel_tolerance_is_kept(tmp_path):
    path = coco_set(tmp_path, [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [15.5, 0, 5.3, 10.4]}])
    assert read_coco(path)["objects"][0][0]["category"] == "dog"


def test_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"images": [],\n "annotations": [,]}', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.json: invalid JSON at line 2, column 18"):
        read_coco(path)


def test_yolo_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (40, 20)).save(tmp_path / "images" / "x.jpg")
    Image.new("RGB", (40, 20)).save(tmp_path / "images" / "y.jpg")
    (tmp_path / "labels" / "x.txt").write_text("1 0.5 0.5 0.5 0.5\n\n0 0.25 0.25 0.1 0.1\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    frame = read_source(str(tmp_path), DataConfig(), None)  # detected as YOLO
    objects = frame["objects"][0]
    assert [o["category"] for o in objects] == ["dog", "cat"]
    assert objects[0]["bbox"] == pytest.approx([10.0, 5.0, 20.0, 10.0])
    assert frame["objects"][1] == [] and frame["width"][0] == 40
    (tmp_path / "labels" / "y.txt").write_text("5 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match=r"y.txt line 1: class 5"):
        read_yolo(tmp_path)


def test_semantic_mask_from_polygons_and_rle_later_paints_over():
    from pycocotools import mask as mask_utils

    square = np.zeros((10, 20), dtype=np.uint8, order="F")
    square[2:6, 3:8] = 1
    rle = mask_utils.encode(np.asfortranarray(square))
    rle = {"size": rle["size"], "counts": rle["counts"].decode()}
    objects = [{"category": "dog", "segmentation": rle},
               {"category": "cat", "segmentation": [[5, 0, 10, 0, 10, 10, 5, 10]]},  # x 5..10, full height
               {"category": "dog", "segmentation": None}]
    mask = semantic_mask(objects, 20, 10, {"dog": 1, "cat": 2})
    assert mask.shape == (10, 20) and mask.dtype == np.uint8
    assert mask[3, 4] == 1 and mask[3, 6] == 2 and mask[8, 7] == 2
    assert mask[0, 0] == 0 and mask[3, 15] == 0
    assert (mask == 1).sum() == 4 * 2  # the square's columns 3-4 only: the polygon painted over 5-7


def fake_mnist(root: Path) -> Path:
    """root/mnist/t10k-*.gz as the script reads them: 10,000 28x28 images, a bright square each, label i % 10."""
    images = np.zeros((10_000, 28, 28), dtype=np.uint8)
    images[:, 8:20, 10:18] = 200
    labels = (np.arange(10_000) % 10).astype(np.uint8)
    (root / "mnist").mkdir(parents=True)
    (root / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(struct.pack(">HBBIII", 0, 8, 3, 10_000, 28, 28) + images.tobytes(), mtime=0))
    (root / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(struct.pack(">HBBI", 0, 8, 1, 10_000) + labels.tobytes(), mtime=0))
    return root


def _run_script(out: Path, data: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_digit_canvases.py"), "--out", str(out),
                    "--train", "6", "--test", "3", "--seed", "3", "--data", str(data)], check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_digit_canvases_deterministic_and_consistent(tmp_path):
    data = fake_mnist(tmp_path / "datasets")
    _run_script(tmp_path / "one", data)
    _run_script(tmp_path / "two", data)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert len(files) == 2 + 2 * 9
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes(), rel
    train = read_coco(tmp_path / "one" / "annotations" / "train.json")
    assert len(train) == 6 and all(1 <= len(objs) <= 3 for objs in train["objects"])
    index = {str(d): d + 1 for d in range(10)}
    for _, row in train.iterrows():
        pixels = np.asarray(Image.open(row["image"]))
        mask = np.asarray(Image.open(Path(row["image"]).parent.parent / "masks" / Path(row["image"]).name))
        assert (mask == semantic_mask(row["objects"], 64, 64, index)).all()
        for obj in row["objects"]:  # the box is the tight box of the digit's bright pixels: the square
            x, y, w, h = (int(v) for v in obj["bbox"])
            assert pixels[y:y + h, x:x + w].min() > 64 and (w, h) != (0, 0)
    digits = json.loads((tmp_path / "one" / "annotations" / "test.json").read_text())
    assert [c["name"] for c in digits["categories"]] == [str(d) for d in range(10)]
