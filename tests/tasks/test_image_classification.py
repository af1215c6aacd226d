"""Image classification on a synthetic image folder: each model family trains and reloads."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

from danlu.recipe import recipe_from_dict
from danlu.inference import TorchForward, outputs
from danlu.tasks import load_task, make_task

from imagekit import colour_squares


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return pd.DataFrame(colour_squares(tmp_path_factory.mktemp("img"), per_class=12), columns=["image", "label"])


def make(arch, extra=None):
    recipe = recipe_from_dict({"name": "t", "task": "image-classification", "data": {"source": "builtin:iris"},
                               "model": {"arch": arch, "size": "tiny", "layers": 1, "channels": [8],
                                         "hidden": [16], **(extra or {})}})
    return make_task(recipe)


def train(task, frame, steps=30, lr=1e-2):
    torch.manual_seed(0)
    model = task.build_model()
    ds = task.encode(frame)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loader = torch.utils.data.DataLoader(ds, batch_size=12, shuffle=True, collate_fn=task.collate)
    model.train()
    step = 0
    while step < steps:
        for batch in loader:
            model(**batch).loss.backward()
            opt.step()
            opt.zero_grad()
            step += 1
    return model


@pytest.mark.parametrize("arch", ["mlp", "cnn", "vit"])
def test_each_architecture_learns_colours_and_reloads(arch, images, tmp_path):
    task = make(arch)
    task.setup(images)
    assert task.size == 16 and len(task.mean) == 3
    model = train(task, images, lr=1e-3 if arch == "vit" else 1e-2)
    logits, labels = outputs(task, TorchForward(model), task.encode(images))
    assert task.metrics(logits, labels)["accuracy"] > 0.9
    task.save(model, tmp_path)
    again, reloaded = load_task(tmp_path)
    logits2, _ = outputs(again, TorchForward(reloaded), again.encode(images))
    assert np.allclose(logits, logits2, atol=1e-4)
    if arch == "vit":  # a transformers model: loads with no danlu code
        proc = AutoImageProcessor.from_pretrained(tmp_path)
        plain = AutoModelForImageClassification.from_pretrained(tmp_path)
        pixels = proc(images=Image.open(images.image[0]).convert("RGB"), return_tensors="pt")["pixel_values"]
        assert plain.config.id2label[int(plain(pixel_values=pixels).logits.argmax())] == images.label[0]


def test_grey_arrays_stay_single_channel():
    frame = pd.DataFrame({"image": [np.full((8, 8), v, np.uint8) for v in (0, 255) * 4],
                          "label": [0, 1] * 4})
    task = make("mlp")
    task.setup(frame)
    assert task.mode == "L"
    assert task.encode(frame)[0]["pixel_values"].shape == (1, 8, 8)


def test_fine_tuning_from_a_saved_vit_directory(images, tmp_path):
    task = make("vit")
    task.setup(images)
    task.save(train(task, images, steps=5, lr=1e-3), tmp_path / "base")
    child = make("vit", {"from": str(tmp_path / "base")})
    child.setup(images)
    assert child.arch == "pretrained" and child.processor is not None
    model = child.build_model()
    assert type(model).__name__ == "ViTForImageClassification"
    logits, _ = outputs(child, TorchForward(model), child.encode(images.head(4)))
    assert logits.shape == (4, 3)
