"""Image segmentation: the metrics on a hand-made case, masks from PNGs (folder pair, csv) and COCO, the gate's
mask rules, augmentations that move the mask, the answers (PNG and RLE), SegFormer from scratch and from a
local checkpoint, and one run of the whole pipeline."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from danlu.errors import DataError
from danlu.inference import TorchForward
from danlu.recipe import recipe_from_dict
from danlu.tasks import load_task, make_task
from danlu.tasks.image_segmentation.answers import decode_mask_png
from danlu.tasks.image_segmentation.metrics import IGNORE, confusion, segmentation_metrics
from danlu.tasks.image_segmentation.sample import CLASSES, scene
from danlu.tasks.image_segmentation.task import augment

SMALL = {"arch": "unet", "channels": [8], "layers": 2, "image_size": 16}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # a shared 2-core machine: two torch threads fighting other jobs run these tiny nets 5x slower
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def recipe(data, model=None, segmentation=None, **extra):
    return recipe_from_dict({"name": "seg", "task": "image-segmentation", "data": data,
                             "model": model or SMALL, "segmentation": segmentation or {},
                             "train": {"epochs": 2, "batch_size": 8, "lr": 0.01, "progress": False}, **extra})


def write_pairs(root, count=12, seed=0, mask_side=16):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        image, mask = scene(rng)
        Image.fromarray(image).save(root / "images" / f"s{i:02d}.png")
        Image.fromarray(mask).resize((mask_side, mask_side), Image.NEAREST).save(root / "masks" / f"s{i:02d}.png")
    return root


def test_metrics_on_a_hand_made_case():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, IGNORE]])
    guess = np.array([[0, 1, 1, 1], [0, 0, 1, 2], [2, 2, 0, 0]])
    matrix = confusion(truth, guess, 3)
    assert matrix.tolist() == [[3, 1, 0], [0, 3, 1], [1, 0, 2]]  # the ignored pixel counts nowhere
    found = segmentation_metrics(matrix, ["bg", "a", "b"])
    # IoU bg 3/(4+4-3) = 0.6, a 3/(4+4-3) = 0.6, b 2/(3+3-2) = 0.5
    assert found["per_class_iou"] == {"bg": 0.6, "a": 0.6, "b": 0.5}
    assert found["miou"] == pytest.approx(1.7 / 3, abs=1e-6)
    assert found["pixel_accuracy"] == pytest.approx(8 / 11, abs=1e-6)
    # a class in neither the labels nor the predictions has no IoU and stays out of the mean
    absent = segmentation_metrics(confusion(truth, guess, 4), ["bg", "a", "b", "c"])
    assert absent["per_class_iou"]["c"] is None and absent["miou"] == found["miou"]


def test_a_folder_pair_is_read_checked_and_its_pixel_shares_reported(tmp_path):
    root = write_pairs(tmp_path / "set")
    r = recipe({"source": str(root), "split": {"validation": 2, "test": 2}})
    splits, report = r.spec.load_data(r)
    assert splits.sizes() == {"train": 8, "validation": 2, "test": 2} and report.passed
    assert set(report.labels["train"]) == {"background", "1", "2"}  # classes inferred from the masks' values
    assert sum(report.labels["train"].values()) == 8 * 16 * 16


def test_a_mask_of_another_size_stops_with_both_files_named(tmp_path):
    from danlu.data import enforce

    root = write_pairs(tmp_path / "set", count=6)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / "s03.png")
    r = recipe({"source": str(root), "split": {"validation": 0, "test": 0}})
    splits, report = r.spec.load_data(r)
    assert len(splits.frames["train"]) == 5  # never trained on, whatever the gate decides
    with pytest.raises(DataError, match=r"masks/s03\.png is 8x8 but its image .*images/s03\.png is 16x16"):
        enforce(report, r.quality.on_fail)


def test_missing_unreadable_and_unknown_masks_are_named(tmp_path):
    from danlu.data import enforce

    root = write_pairs(tmp_path / "set", count=8)
    (root / "masks" / "s01.png").unlink()
    (root / "masks" / "s02.png").write_bytes(b"not a png")
    bad = np.zeros((16, 16), np.uint8)
    bad[0, 0] = 7
    Image.fromarray(bad).save(root / "masks" / "s05.png")
    r = recipe({"source": str(root), "split": {"validation": 0, "test": 0}},
               segmentation={"classes": CLASSES}, quality={"on_fail": "warn", "max_unreadable": 5})
    splits, report = r.spec.load_data(r)
    rules = {rule.name: rule for rule in report.rules}
    assert rules["mask_unreadable"].count == 2 and rules["mask_unreadable"].passed
    assert "no mask for" in rules["mask_unreadable"].message and "s01.png" in rules["mask_unreadable"].message
    assert not rules["mask_values"].passed and "values 7" in rules["mask_values"].message
    assert len(splits.frames["train"]) == 6  # unreadable masks dropped; stray values kept, ignored in training
    warnings = enforce(report, "warn")
    assert any("mask_values" in w and "s05.png" in w for w in warnings)
    task = make_task(r)
    task.setup(splits.frames["train"])
    row = splits.frames["train"].set_index(splits.frames["train"]["mask"].str[-7:]).loc["s05.png"].to_dict()
    assert task.encode_row(row)["labels"][0, 0] == IGNORE


def test_a_csv_of_image_and_mask_paths_relative_to_it(tmp_path):
    root = write_pairs(tmp_path / "set", count=6)
    table = root / "pairs.csv"
    table.write_text("file,seg\n" + "".join(f"images/s{i:02d}.png,masks/s{i:02d}.png\n" for i in range(6)))
    r = recipe({"train": str(table), "columns": {"image": "file", "mask": "seg"}, "split": {"validation": 0, "test": 0}})
    splits, report = r.spec.load_data(r)
    assert report.passed and len(splits.frames["train"]) == 6
    assert splits.frames["train"]["mask"].iloc[0] == str(root / "masks" / "s00.png")


def coco_file(tmp_path, image_side=16):
    folder = tmp_path / "coco"
    (folder / "images").mkdir(parents=True)
    Image.fromarray(np.full((image_side, image_side), 40, np.uint8)).save(folder / "images" / "a.png")
    from pycocotools import mask as coco_mask

    square = np.zeros((16, 16), np.uint8, order="F")
    square[8:12, 8:12] = 1
    rle = coco_mask.encode(np.asfortranarray(square))
    content = {"images": [{"id": 1, "file_name": "a.png", "width": 16, "height": 16}],
               "categories": [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog"}],
               "annotations": [
                   {"id": 10, "image_id": 1, "category_id": 5, "bbox": [0, 0, 4, 4], "iscrowd": 0,
                    "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]},
                   {"id": 11, "image_id": 1, "category_id": 3, "bbox": [8, 8, 4, 4], "iscrowd": 1,
                    "segmentation": {"size": [16, 16], "counts": rle["counts"].decode()}}]}
    (folder / "annotations").mkdir()
    path = folder / "annotations" / "train.json"
    path.write_text(json.dumps(content))
    return path


def test_coco_polygons_and_rle_become_one_semantic_mask(tmp_path):
    r = recipe({"train": str(coco_file(tmp_path)), "split": {"validation": 0, "test": 0}})
    splits, report = r.spec.load_data(r)
    assert report.passed
    task = make_task(r)
    task.setup(splits.frames["train"])
    assert task.classes == ["background", "cat", "dog"]  # category-id order
    labels = task.encode(splits.frames["train"])[0]["labels"]
    assert (labels[8:12, 8:12] == 1).all() and labels[1:3, 1:3].min() == 2 and labels[14, 14] == 0


def test_an_annotated_size_that_differs_from_the_image_is_named(tmp_path):
    r = recipe({"train": str(coco_file(tmp_path, image_side=20)), "split": {"validation": 0, "test": 0}})
    from danlu.data import enforce

    with pytest.raises(DataError, match=r"the annotations of .*a\.png in .*train\.json is 16x16 but its image "
                                        r".*a\.png is 20x20"):
        enforce(r.spec.load_data(r)[1], "stop")


def test_augmentations_move_the_mask_with_the_image():
    from danlu.tasks.image_segmentation.spec import AugmentConfig

    rng = np.random.default_rng(0)
    image, mask = scene(rng)
    seen = set()
    for seed in range(12):
        img, m = augment(Image.fromarray(image), Image.fromarray(mask), AugmentConfig(flip=True, vflip=True, crop=0.3),
                         np.random.default_rng(seed))
        pixels, classes = np.asarray(img, dtype=np.int16), np.asarray(m)
        assert img.size == m.size == (16, 16)
        # the bright square and the dark bar stay under their classes, wherever they went
        assert pixels[classes == 1].mean() > 180 and pixels[classes == 2].mean() < 80
        seen.add(classes.tobytes())
    assert len(seen) > 6


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from danlu.tasks.image_segmentation.sample import sample

    found = sample(48, 0)
    r = recipe_from_dict({"name": "seg", "task": "image-segmentation", "data": {"source": "builtin:iris"},
                          **found.recipe})
    task = make_task(r)
    task.setup(found.frame)
    torch.manual_seed(0)
    model = task.build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    data = task.encode(found.frame, train=True)
    for _ in range(4):
        for start in range(0, 48, 8):
            model(**task.collate([data[i] for i in range(start, start + 8)])).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    return task, model.eval(), found.frame


def test_the_unet_learns_the_sample_and_answers_png_and_rle_at_the_images_size(trained, tmp_path):
    from pycocotools import mask as coco_mask

    task, model, frame = trained
    # the most frequent class everywhere scores about 0.25 here
    assert task.evaluate(TorchForward(model), task.encode(frame))["miou"] > 0.5
    big = np.asarray(Image.fromarray(frame["image"].iloc[0]).resize((40, 24)))
    answer = task.predict(TorchForward(model), pd.DataFrame({"image": [big]}))[0]
    mask = decode_mask_png(answer["mask_png"])
    assert mask.shape == (24, 40) and (answer["width"], answer["height"]) == (40, 24)
    for region in answer["regions"]:
        decoded = coco_mask.decode({"size": region["size"], "counts": region["counts"].encode()})
        assert (decoded.astype(bool) == (mask == region["id"])).all()
    assert sum(answer["shares"].values()) == pytest.approx(1.0, abs=1e-5)
    task.save(model, tmp_path)
    from transformers import AutoModelForSemanticSegmentation

    plain = AutoModelForSemanticSegmentation.from_pretrained(tmp_path)  # danlu's U-Net through the Auto class
    assert type(plain).__name__ == "UNetForSemanticSegmentation"


def test_the_report_overlays_masks_on_test_images(trained):
    task, model, frame = trained
    extra, sections = task.after_training(model, {"train": frame, "test": frame.head(3)})
    (heading, blocks), = sections
    assert heading == "Masks on test images" and len(blocks) == 3
    assert all(b[0] == "image" and b[2][:8] == b"\x89PNG\r\n\x1a\n" for b in blocks)


def test_segformer_from_a_config_and_from_a_local_checkpoint(trained, tmp_path):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    _, _, frame = trained
    scratch = make_task(recipe({"source": "builtin:iris"}, model={"arch": "segformer", "size": "tiny", "image_size": 32}))
    scratch.setup(frame)
    model = scratch.build_model()
    assert isinstance(model, SegformerForSemanticSegmentation) and model.config.num_channels == 1
    batch = scratch.collate([scratch.encode(frame)[i] for i in range(2)])
    assert torch.isfinite(model(**batch).loss)
    assert scratch.evaluate(TorchForward(model.eval()), scratch.encode(frame.head(4)))["n"] == 4

    torch.manual_seed(0)
    tiny = SegformerForSemanticSegmentation(SegformerConfig(
        num_channels=3, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
        decoder_hidden_size=16, num_labels=5))
    checkpoint = tmp_path / "tiny-segformer"
    tiny.save_pretrained(checkpoint)
    SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(checkpoint)
    task = make_task(recipe({"source": "builtin:iris"}, model={"from": str(checkpoint)},
                            segmentation={"classes": CLASSES}))
    task.setup(frame)
    assert (task.size, task.mode, task.engine) == (32, "RGB", "trainer")
    model = task.build_model().eval()
    assert model.config.num_labels == 3
    before = task.predict(TorchForward(model), frame.head(2))
    task.save(model, tmp_path / "saved")
    again, loaded = load_task(tmp_path / "saved")
    assert again.predict(TorchForward(loaded), frame.head(2)) == before


def test_the_pipeline_trains_reports_and_predicts(tmp_path):
    from danlu.pipeline import train
    from danlu.predict import predict_input

    root = write_pairs(tmp_path / "set", count=20)
    r = recipe({"source": str(root), "split": {"validation": 4, "test": 4, "seed": 0}},
               segmentation={"classes": CLASSES, "augment": {"flip": True, "crop": 0.2}, "shown": 2})
    run = train(r, tmp_path / "run")
    metrics = json.loads(run.metrics_path.read_text())
    for split in ("validation", "test"):
        assert {"miou", "pixel_accuracy", "per_class_iou"} <= set(metrics[split])
        assert set(metrics[split]["per_class_iou"]) == set(CLASSES)
    assert set(metrics["baselines"]["test"]) == {"majority", "prior"}
    report = (run.root / "report.md").read_text()
    assert "Masks on test images" in report and "IoU per class" in report
    assert (run.root / "plots" / "segmentation-1.png").is_file()
    (answer,) = list(predict_input(run.root, str(root / "images" / "s00.png")))
    assert decode_mask_png(answer["mask_png"]).shape == (16, 16)
    served = serve_one(run.root, (root / "images" / "s00.png").read_bytes())
    assert served.status_code == 200, served.text
    (prediction,) = served.json()["predictions"]
    assert prediction["mask_png"] == answer["mask_png"] and prediction["labels"]["1"] == "square"


def serve_one(run_dir, png: bytes):
    """POST /v1/predict with one base64 image to the run's server, in-process."""
    import asyncio
    import base64

    import httpx

    from danlu.serve.app import ServeSettings, create_app
    from danlu.serve.runner import load_runner

    async def go():
        app = create_app(load_runner(run_dir), ServeSettings())
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://danlu.test") as client:
                return await client.post("/v1/predict", json={"inputs": {"image": base64.b64encode(png).decode()}})

    return asyncio.run(go())
