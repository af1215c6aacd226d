"""Segmentation on real data ($DANLU_DATA): digit canvases made from the MNIST images, where the COCO RLE
annotations and the mask PNGs must give the same masks, and the shipped recipe runs end to end on a few of
them; and COCO128, whose polygons and crowd RLE are read and gated as the shipped recipe reads them. The full
recipes' figures are in docs/recipes.md; these budgets prove the paths, not the figures."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from danlu.pipeline import train
from danlu.recipe import load_recipe
from danlu.tasks import make_task

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DANLU_DATA", ROOT.parent / "shared" / "datasets"))
RECIPES = ROOT / "recipes"

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def canvases(tmp_path_factory) -> Path:
    if not (DATA / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST not found under {DATA} (set DANLU_DATA to the shared datasets folder)")
    spec = importlib.util.spec_from_file_location("make_digit_canvases", ROOT / "scripts" / "make_digit_canvases.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path_factory.mktemp("canvases")
    assert script.main(["--out", str(out), "--seed", "0", "--train", "48", "--test", "12", "--data", str(DATA)]) == 0
    return out


def test_coco_rle_and_mask_pngs_give_the_same_masks(canvases):
    from_coco = load_recipe(RECIPES / "digits_segment.yaml", [f"data.train={canvases}/annotations/train.json",
                                                              f"data.test={canvases}/annotations/test.json"])
    from_pngs = load_recipe(RECIPES / "digits_segment.yaml", [f"data.train={canvases}", "data.test=null",
                                                              "segmentation.classes=[background,'0','1','2','3','4',"
                                                              "'5','6','7','8','9']", "data.split.test=12"])
    coco_splits, coco_report = from_coco.spec.load_data(from_coco)
    png_splits, png_report = from_pngs.spec.load_data(from_pngs)
    assert coco_report.passed and png_report.passed
    coco_task, png_task = make_task(from_coco), make_task(from_pngs)
    coco_task.setup(coco_splits.frames["train"])
    png_task.setup(png_splits.frames["train"])
    assert coco_task.classes == png_task.classes  # the categories "0".."9" (ids 1-10) are the PNG values 1-10
    from danlu.tasks.image_segmentation.classes import row_mask

    by_image = {Path(r["image"]).name: r for frame in png_splits.frames.values() for r in frame.to_dict("records")}
    for row in coco_splits.frames["train"].head(10).to_dict("records"):
        drawn, _ = row_mask(row, coco_task.classes)
        stored, _ = row_mask(by_image[Path(row["image"]).name], png_task.classes)
        assert (drawn == stored).all()


def test_the_digits_recipe_runs_end_to_end_on_a_few_canvases(canvases, tmp_path):
    from danlu.predict import predict_input

    torch.set_num_threads(1)
    recipe = load_recipe(RECIPES / "digits_segment.yaml", [f"data.train={canvases}/annotations/train.json",
                                                           f"data.test={canvases}/annotations/test.json",
                                                           "train.epochs=1", "train.progress=false"])
    run = train(recipe, tmp_path / "run")
    metrics = json.loads(run.metrics_path.read_text())
    assert metrics["test"]["n"] == 12 and 0.0 <= metrics["test"]["miou"] <= 1.0
    assert set(metrics["test"]["per_class_iou"]) == {"background", *map(str, range(10))}
    (answer,) = list(predict_input(run.root, str(canvases / "images" / "test_00000.png")))
    assert (answer["width"], answer["height"]) == (64, 64)


def test_coco128_polygons_and_crowd_rle_are_read_and_gated(tmp_path):
    if not (DATA / "coco128_instances" / "annotations" / "instances_train2017.json").is_file():
        pytest.skip(f"coco128_instances not found under {DATA} (set DANLU_DATA to the shared datasets folder)")
    recipe = load_recipe(RECIPES / "coco128_segment.yaml")
    splits, report = recipe.spec.load_data(recipe)
    assert report.passed and sum(splits.sizes().values()) == 128
    pixels = {name: sum(report.labels[s][name] for s in report.labels) for name in report.labels["train"]}
    assert len(pixels) == 81 and pixels["person"] > 0  # background + the 80 declared categories
    task = make_task(recipe)
    task.setup(splits.frames["train"].head(8))
    item = task.encode(splits.frames["train"].head(8))[0]
    assert item["pixel_values"].shape == (3, 128, 128) and item["labels"].shape == (128, 128)
    assert np.isin(np.unique(item["labels"]), np.arange(81)).all()
