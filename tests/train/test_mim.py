"""`pretrain: {objective: mim}`: masked image modelling for a ViT, then classification from its weights."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, ViTForMaskedImageModeling

from danlu.errors import DataError, RecipeError
from danlu.pipeline import train
from danlu.recipe import recipe_from_dict
from danlu.train.mim import PatchMasks

from imagekit import colour_squares


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Noisy single-colour squares: a hidden patch's colour is readable from the visible ones."""
    root = tmp_path_factory.mktemp("mim")
    rows = colour_squares(root / "pics", per_class=16, noise=15)
    table = root / "labels.csv"
    pd.DataFrame(rows, columns=["image", "label"]).to_csv(table, index=False)
    return table


def recipe(tmp_path, table, model=None, **sections):
    body = {
        "name": "mim", "task": "image-classification",
        "data": {"source": str(table), "split": {"validation": 0.2, "test": 0.2, "seed": 0}},
        "quality": {"on_fail": "warn"},
        "model": {"arch": "vit", "image_size": 16, "patch_size": 4, "layers": 1, "embedding": 32, "heads": 2,
                  "feed_forward": 64, **(model or {})},
        "train": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "progress": False, "precision": "fp32", "seed": 0},
    }
    body.update(sections)
    return recipe_from_dict(body, recipe_path=tmp_path / "r.yaml")


def weight(state: dict, suffix: str) -> torch.Tensor:
    return next(v for k, v in state.items() if k.endswith(suffix))


def test_mim_pretrains_a_vit_and_the_classifier_starts_from_it(tmp_path, images):
    # lr ~0 while fine-tuning: the classifier's encoder must still hold the pretrained weights.
    r = recipe(tmp_path, images, pretrain={"objective": "mim", "epochs": 30, "lr": 3e-3, "batch_size": 8},
               train={"epochs": 1, "batch_size": 8, "lr": 1e-9, "progress": False, "precision": "fp32", "seed": 0})
    run = train(r, tmp_path / "run")
    pre = tmp_path / "run" / "pretrain"
    metrics = json.loads((pre / "metrics.json").read_text())
    assert metrics["objective"] == "mim" and metrics["images"] == 28 and metrics["steps"] > 0
    assert np.isfinite(metrics["eval_loss"])
    losses = [h["loss"] for h in json.loads((pre / "history.json").read_text()) if "loss" in h]
    assert losses[-1] < 0.5 * losses[0]  # the reconstruction is learned, not noise
    assert (pre / "model" / "preprocessor_config.json").exists()
    assert ViTForMaskedImageModeling.from_pretrained(pre / "model").config.encoder_stride == 4
    pretrained = load_file(pre / "model" / "model.safetensors")
    tuned = load_file(run.model_dir / "model.safetensors")
    for part in ("patch_embeddings.projection.weight", "layer.0.attention.attention.query.weight"):
        assert torch.allclose(weight(pretrained, part), weight(tuned, part), atol=1e-5), part
    report = (run.root / "report.md").read_text()
    assert "Pretraining" in report and "images" in report
    # The fine-tuned model is a plain transformers image classifier.
    assert AutoModelForImageClassification.from_pretrained(run.model_dir).config.num_labels == 3


def test_mim_corpus_can_be_a_folder_and_a_bad_one_is_named(tmp_path, images):
    folder = images.parent / "pics"
    r = recipe(tmp_path, images, pretrain={"objective": "mim", "corpus": str(folder), "max_steps": 2},
               train={"epochs": 1, "batch_size": 8, "progress": False, "precision": "fp32"})
    train(r, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "pretrain" / "metrics.json").read_text())["images"] == 48
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="holds no image files"):
        train(recipe(tmp_path, images, pretrain={"objective": "mim", "corpus": str(empty)}), tmp_path / "r2")
    (empty / "sub" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"1 of 1 files .* not readable images: .*broken\.png"):
        train(recipe(tmp_path, images, pretrain={"objective": "mim", "corpus": str(empty)}), tmp_path / "r3")


def test_mim_is_checked_against_the_task_and_model(tmp_path, images):
    with pytest.raises(RecipeError, match="'mim' pretrains a ViT; set model.arch: vit"):
        recipe(tmp_path, images, model={"arch": "cnn"}, pretrain={"objective": "mim"})
    with pytest.raises(RecipeError, match="pretrain.objective: 'mlm' is not a pretraining objective of "
                                          "image-classification; image-classification offers mim"):
        recipe(tmp_path, images, pretrain={"objective": "mlm"})
    with pytest.raises(RecipeError, match="multiple of model.patch_size"):
        train(recipe(tmp_path, images, model={"patch_size": 3}, pretrain={"objective": "mim"}), tmp_path / "r")


def test_patch_masks_hide_the_asked_share_of_patches():
    masks = PatchMasks(lambda batch: {"pixel_values": torch.zeros(len(batch), 3, 8, 8)}, patches=16, share=0.6)
    out = masks([{}] * 5)
    assert out["labels"].shape == (5, 16) and out["labels"].dtype == torch.bool
    assert (out["labels"].sum(1) == 10).all()  # round(0.6 * 16)
    assert not torch.equal(out["labels"][0], out["labels"][1])  # drawn per image
