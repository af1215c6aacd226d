"""Detection data on the real datasets: COCO128's annotations as SOURCE.md counts them, its masks, and
digit canvases made from the real MNIST images."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from danlu.data.coco import categories, read_coco, semantic_mask

pytestmark = pytest.mark.real
REPO = Path(__file__).resolve().parents[2]
COCO128 = "coco128_instances/annotations/instances_train2017.json"


def needs(datasets_dir: Path, folder: str) -> Path:
    if not (datasets_dir / folder).is_dir():
        pytest.skip(f"{folder} not found under {datasets_dir}")
    return datasets_dir


def test_coco128_reads_as_its_source_counts_it(datasets_dir):
    path = needs(datasets_dir, "coco128_instances") / COCO128
    frame = read_coco(path)
    objects = [o for objs in frame["objects"] for o in objs]
    assert len(frame) == 128 and len(objects) == 939
    assert sum(len(objs) == 0 for objs in frame["objects"]) == 2  # kept as negatives
    assert sum(o["iscrowd"] for o in objects) == 10 and len({o["category"] for o in objects}) == 71
    assert all(Path(p).is_file() for p in frame["image"])
    names = categories(path)
    assert len(names) == 80 and names[0] == "person"
    row = frame.iloc[int(np.argmax([len(o) for o in frame["objects"]]))]
    mask = semantic_mask(row["objects"], row["width"], row["height"], {n: i + 1 for i, n in enumerate(names)})
    assert mask.shape == (row["height"], row["width"]) and 0.01 < (mask > 0).mean() < 1


def test_digit_canvases_from_real_mnist(datasets_dir, tmp_path):
    needs(datasets_dir, "mnist")
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_digit_canvases.py"), "--out", str(tmp_path),
                    "--train", "20", "--test", "10", "--data", str(datasets_dir)], check=True, capture_output=True)
    test = json.loads((tmp_path / "annotations" / "test.json").read_text())
    assert len(test["images"]) == 10 and 10 <= len(test["annotations"]) <= 30
    frame = read_coco(tmp_path / "annotations" / "train.json")
    for _, row in frame.iterrows():
        pixels = np.asarray(Image.open(row["image"]))
        mask = np.asarray(Image.open(tmp_path / "masks" / Path(row["image"]).name))
        for obj in row["objects"]:
            x, y, w, h = (int(v) for v in obj["bbox"])
            digit = int(obj["category"])
            inside = mask[y:y + h, x:x + w]
            assert (inside == digit + 1).any() and pixels[y:y + h, x:x + w].max() > 64
        assert set(np.unique(mask)) <= {0} | {int(o["category"]) + 1 for o in row["objects"]}
