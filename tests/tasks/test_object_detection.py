"""Object detection: COCO metrics with known answers, box decoding, augmentations that move the boxes, the
gate's rules, every architecture's forward, a pretrained checkpoint, and a run from COCO files to predict
and serve."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from danlu.cli import app
from danlu.data.objects_quality import object_rules
from danlu.data.splits import Splits
from danlu.recipe import recipe_from_dict
from danlu.tasks import make_task
from danlu.tasks.object_detection.augment import augment
from danlu.tasks.object_detection.measure import Detections, coco_metrics, decode
from danlu.tasks.object_detection.sample import sample
from danlu.tasks.object_detection.spec import AugmentConfig

NAMES = ["cat", "dog"]
TWO = [np.array([[0, 0.1, 0.1, 0.3, 0.3], [1, 0.5, 0.5, 0.9, 0.8]], dtype=np.float32)]


def found(rows) -> Detections:
    rows = np.asarray(rows, dtype=np.float32).reshape(-1, 6)  # x1 y1 x2 y2 score class
    return Detections(rows[:, :4], rows[:, 4], rows[:, 5].astype(int))


def test_perfect_detections_score_one():
    got = coco_metrics([found([[0.1, 0.1, 0.3, 0.3, 0.9, 0], [0.5, 0.5, 0.9, 0.8, 0.8, 1]])], TWO, NAMES)
    assert got["map"] == pytest.approx(1.0) and got["map_50"] == pytest.approx(1.0)
    assert got["per_class_ap"] == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0)}


def test_one_of_two_boxes_found_gives_cocos_101_point_ap():
    # Two cats, one found exactly: precision 1 up to recall 0.5, nothing after. COCO interpolates at the 101
    # recall points 0, 0.01, ..., 1: 51 of them have precision 1, so AP = 51/101 at every IoU threshold.
    truth = [np.array([[0, 0.1, 0.1, 0.3, 0.3], [0, 0.6, 0.6, 0.9, 0.9]], dtype=np.float32)]
    got = coco_metrics([found([[0.1, 0.1, 0.3, 0.3, 0.9, 0]])], truth, NAMES)
    assert got["map"] == pytest.approx(51 / 101, abs=1e-6) and got["map_50"] == pytest.approx(51 / 101, abs=1e-6)
    assert set(got["per_class_ap"]) == {"cat"}  # no dog in the split: no AP for it


def test_a_loose_box_counts_at_iou_half_but_not_at_three_quarters():
    # IoU of [0.1, 0.1, 0.3, 0.3] and [0.1, 0.1, 0.3, 0.4]: 0.04 / 0.06 = 0.667: a hit at the thresholds
    # 0.50, 0.55, 0.60, 0.65 only, 4 of COCO's 10.
    truth = [TWO[0][:1]]
    got = coco_metrics([found([[0.1, 0.1, 0.3, 0.4, 0.9, 0]])], truth, NAMES)
    assert got["map_50"] == pytest.approx(1.0) and got["map_75"] == pytest.approx(0.0)
    assert got["map"] == pytest.approx(0.4)
    assert coco_metrics([found([])], truth, NAMES)["map"] == 0.0


def test_centernet_map_decodes_to_the_box_it_encodes():
    out = np.full((1, 2 + 4, 8, 8), -10.0, dtype=np.float32)
    out[0, 1, 3, 5] = 4.0  # a dog centred in cell (x 5, y 3)
    out[0, 2:4, 3, 5] = (2.0, 4.0)  # 2 cells wide, 4 high
    out[0, 4:6, 3, 5] = (0.5, 0.25)  # centre at x 5.5, y 3.25
    (got,) = decode(out, 2, 0.5, 100)
    assert got.labels.tolist() == [1] and got.scores[0] == pytest.approx(1 / (1 + np.exp(-4)))
    np.testing.assert_allclose(got.boxes[0], [4.5 / 8, 1.25 / 8, 6.5 / 8, 5.25 / 8], atol=1e-6)


@pytest.mark.parametrize("flip", [False, True])
def test_augmentation_moves_the_box_with_the_pixels(flip):
    pixels = np.zeros((64, 64), dtype=np.uint8)
    pixels[10:30, 20:36] = 255
    boxes = np.array([[0, 20 / 64, 10 / 64, 36 / 64, 30 / 64]], dtype=np.float32)
    cfg = AugmentConfig(flip=flip, scale=(0.7, 1.3), translate=0.15, min_visible=0.0)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        img, moved = augment(Image.fromarray(pixels), boxes, cfg, rng)
        ys, xs = np.nonzero(np.asarray(img) > 127)
        seen = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) / 64
        assert len(moved) == 1
        np.testing.assert_allclose(moved[0, 1:], seen, atol=1.6 / 64)


def test_gate_counts_bad_boxes_unknown_categories_and_images_without_objects():
    img = np.zeros((10, 20), dtype=np.uint8)
    train = pd.DataFrame({"image": [img, img, img], "_row": [1, 2, 3], "_source": "t", "objects": [
        [{"bbox": [1, 1, 4, 4], "category": "cat"}, {"bbox": [18, 2, 6, 3], "category": "cat"}],
        [{"bbox": [1, 1, 0, 4], "category": "cat"}], []]})
    test = pd.DataFrame({"image": [img], "_row": [1], "_source": "s", "objects": [[{"bbox": [1, 1, 2, 2], "category": "emu"}]]})
    rules = {r.name: r for r in object_rules(Splits({"train": train, "test": test}))}
    assert rules["box_outside"].count == 1 and not rules["box_outside"].passed
    assert "train:1" in rules["box_outside"].message and "20x10" in rules["box_outside"].message
    assert rules["box_area"].count == 1 and rules["box_area"].examples == ["train:2"]
    assert rules["category"].count == 1 and "'emu'" in rules["category"].message
    assert rules["no_objects"].passed and rules["no_objects"].count == 1


def tiny_recipe(**model) -> dict:
    return {"name": "t", "task": "object-detection", "data": {"source": "builtin:iris"},
            "model": {"image_size": 32, **model}, "detection": {"augment": None},
            "train": {"epochs": 1, "batch_size": 4, "progress": False}}


@pytest.mark.parametrize("arch", ["detr", "conditional_detr", "rt_detr", "yolos"])
def test_each_transformers_architecture_trains_a_step_and_reloads(arch, tmp_path):
    from danlu.inference import TorchForward
    from danlu.tasks import load_task

    frame = sample(8, 0).frame
    task = make_task(recipe_from_dict(tiny_recipe(arch=arch, embedding=32, heads=2, layers=1, feed_forward=64,
                                                  channels=[8, 16, 32, 64])))
    task.setup(frame)
    torch.manual_seed(0)
    model = task.build_model()
    data = task.encode(frame, train=True)
    batch = task.collate([data[i] for i in range(4)])
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    task.save(model, tmp_path)
    loaded_task, loaded = load_task(tmp_path)
    assert type(loaded.model).__name__ == type(model.model).__name__
    before = task.predict(TorchForward(model), frame.head(2))
    assert before == loaded_task.predict(TorchForward(loaded), frame.head(2))


def test_fine_tuning_from_a_saved_detr_checkpoint(tmp_path):
    """model.from: a local checkpoint with its image processor (a tiny random DETR; hub ids take the same path)."""
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                            layer_type="basic", out_features=["stage4"])
    config = DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=backbone,
                        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=8,
                        num_labels=5)
    DetrForObjectDetection(config).save_pretrained(tmp_path / "ckpt")
    DetrImageProcessor(image_mean=[0.4, 0.4, 0.4], image_std=[0.2, 0.2, 0.2]).save_pretrained(tmp_path / "ckpt")
    frame = sample(8, 0).frame
    recipe = recipe_from_dict({**tiny_recipe(), "model": {"from": str(tmp_path / "ckpt"), "image_size": 32}})
    task = make_task(recipe)
    task.setup(frame)
    model = task.build_model()
    assert model.model.config.id2label == {0: "square", 1: "cross"} and task.mean == [0.4, 0.4, 0.4]
    data = task.encode(frame)
    assert torch.isfinite(model(**task.collate([data[i] for i in range(4)])).loss)
    task.save(model, tmp_path / "out")
    assert (tmp_path / "out" / "preprocessor_config.json").is_file()
    assert (tmp_path / "out" / "model.safetensors").is_file()


# -- a whole run, from COCO files on disk ----------------------------------------------------
def write_coco(folder: Path, frame: pd.DataFrame, split: str, box=None) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "annotations").mkdir(exist_ok=True)
    images, annotations = [], []
    for i, (pixels, objects) in enumerate(zip(frame["image"], frame["objects"]), start=1):
        Image.fromarray(pixels).save(folder / "images" / f"{split}{i}.png")
        images.append({"id": i, "file_name": f"{split}{i}.png", "width": 32, "height": 32})
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": i, "bbox": obj["bbox"],
                                "category_id": obj["category_id"]})
    if box is not None:
        annotations[0]["bbox"] = box
    content = {"images": images, "annotations": annotations,
               "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "cross"}]}
    path = folder / "annotations" / f"{split}.json"
    path.write_text(json.dumps(content))
    return path


def write_recipe(folder: Path, train: Path, test: Path) -> Path:
    body = {"name": "shapes", "task": "object-detection", "data": {"train": str(train), "test": str(test),
                                                                  "split": {"validation": 6}},
            **sample().recipe}
    body["train"] = {**body["train"], "epochs": 6}
    path = folder / "r.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from danlu.pipeline import train
    from danlu.recipe import load_recipe

    folder = tmp_path_factory.mktemp("detect-run")
    frame = sample(72, 0).frame
    recipe = write_recipe(folder, write_coco(folder, frame.iloc[:60], "train"),
                          write_coco(folder, frame.iloc[60:], "test"))
    torch.set_num_threads(1)
    return train(load_recipe(recipe), folder / "run").root, folder


def test_a_run_reports_coco_metrics_and_draws_its_boxes(finished):
    run, _ = finished
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("validation", "test"):
        assert {"map", "map_50", "map_75", "per_class_ap"} <= set(metrics[split])
    assert set(metrics["test"]["per_class_ap"]) == {"square", "cross"}
    assert metrics["test"]["map_50"] > metrics["baselines"]["test"]["prior"]["map_50"]
    report = (run / "report.md").read_text()
    assert "plots/detections_test.png" in report and "AP per class: test" in report
    assert Image.open(run / "plots" / "detections_test.png").size[0] > 0


def test_predict_and_serve_return_boxes_labels_scores_in_image_pixels(finished):
    import base64
    import io

    from fastapi.testclient import TestClient

    from danlu.predict import predict_input
    from danlu.serve.app import ServeSettings, create_app
    from danlu.serve.runner import load_runner

    run, folder = finished
    image = folder / "images" / "test1.png"
    big = folder / "big.png"
    Image.open(image).resize((64, 96), Image.NEAREST).save(big)  # twice as wide, three times as high
    (small,) = predict_input(run, str(image))
    (large,) = predict_input(run, str(big))
    assert {"boxes", "labels", "scores"} <= set(small) and small["labels"] == large["labels"] and small["labels"]
    for a, b in zip(small["boxes"], large["boxes"]):
        np.testing.assert_allclose(b, [a[0] * 2, a[1] * 3, a[2] * 2, a[3] * 3], atol=1.5)  # resampled: not exact
    buffer = io.BytesIO()
    Image.open(image).save(buffer, format="PNG")
    with TestClient(create_app(load_runner(run), ServeSettings())) as client:
        answer = client.post("/v1/predict", json={"inputs": {"image": base64.b64encode(buffer.getvalue()).decode()}})
        junk = client.post("/v1/predict", json={"inputs": {"image": base64.b64encode(b"not a picture").decode()}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0] == {k: small[k] for k in ("boxes", "labels", "scores")}
    assert junk.status_code == 422


@pytest.mark.parametrize("box, annotation_image, says", [
    ([20, 20, 30, 8], None, "annotation 1: bbox [20, 20, 30, 8] lies outside its 32x32 image"),
    (None, 99, "annotation 1 points at image_id 99, which is not in 'images'"),
])
def test_bad_coco_stops_the_check_naming_file_and_annotation(tmp_path, box, annotation_image, says):
    frame = sample(12, 0).frame
    train = write_coco(tmp_path, frame.iloc[:8], "train", box=box)
    if annotation_image is not None:
        content = json.loads(train.read_text())
        content["annotations"][0]["image_id"] = annotation_image
        train.write_text(json.dumps(content))
    recipe = write_recipe(tmp_path, train, write_coco(tmp_path, frame.iloc[8:], "test"))
    result = CliRunner().invoke(app, ["check", str(recipe)])
    assert result.exit_code != 0
    assert "train.json" in result.output and says in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
