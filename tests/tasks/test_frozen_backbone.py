"""The frozen-backbone transfer system: a pretrained convolutional body (rotation or contrastive
pretraining, danlu's own) frozen under a new head, on tiny synthetic images."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import ViTConfig, ViTForImageClassification

from danlu.errors import RecipeError
from danlu.models import ClassicConfig, ClassicModel
from danlu.pipeline import train
from danlu.recipe import recipe_from_dict
from danlu.tasks import make_task
from danlu.tasks.image_classification.augment import crop_and_flip, simclr_view
from danlu.tasks.image_classification.pretext import Pretext
from danlu.train.loop import fit_loop
from danlu.train.transfer import apply_transfer

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 40), "blue": (40, 40, 200)}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """Noisy colour squares with a bright band along the top: the colour is the class, and which way
    is up is visible, so rotation prediction has something to learn."""
    root = tmp_path_factory.mktemp("frozen")
    rng = np.random.default_rng(0)
    rows = []
    for name, colour in COLOURS.items():
        for i in range(16):
            arr = np.array(colour, dtype=float) + rng.normal(0, 20, size=(8, 8, 3))
            arr[:2] = 250
            path = root / f"{name}-{i}.png"
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path)
            rows.append((str(path), name))
    out = root / "labels.csv"
    pd.DataFrame(rows, columns=["image", "label"]).to_csv(out, index=False)
    return out


def recipe(tmp_path, table, **sections):
    body = {"name": "frozen", "task": "image-classification",
            "data": {"source": str(table), "split": {"validation": 0.2, "test": 0.2, "seed": 0}},
            "quality": {"on_fail": "warn"}, "model": {"arch": "vgg", "size": "tiny"},
            "train": {"epochs": 4, "batch_size": 8, "lr": 0.01, "progress": False, "seed": 0,
                      "early_stopping": {"patience": 2}},
            "evaluate": {"baseline": False}}
    body.update(sections)
    return recipe_from_dict(body, recipe_path=tmp_path / "r.yaml")


def body_of(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith("body.")}


def test_rotation_pretraining_then_a_frozen_probe_on_its_body(tmp_path, table):
    r = recipe(tmp_path, table, pretrain={"objective": "rotation", "epochs": 12, "batch_size": 16, "lr": 0.005},
               transfer={"freeze": "backbone"})
    run = train(r, tmp_path / "run")
    pre = tmp_path / "run" / "pretrain"
    metrics = json.loads((pre / "metrics.json").read_text())
    assert metrics["objective"] == "rotation" and metrics["images"] == 28 and metrics["steps"] > 0
    losses = [h["loss"] for h in json.loads((pre / "history.json").read_text()) if "loss" in h]
    assert losses[-1] < 0.5 * losses[0]  # which way is up is learned (chance: ln 4 = 1.39)
    assert metrics["pretext_accuracy"] > 0.5  # chance: 0.25
    pretrained, probe = load_file(pre / "model" / "model.safetensors"), load_file(run.model_dir / "model.safetensors")
    frozen = body_of(pretrained)
    assert any("running_mean" in k for k in frozen)
    for key, value in frozen.items():  # weights and BatchNorm statistics alike: the body never moved
        assert torch.equal(value, probe[key]), key
    assert not torch.equal(pretrained["head.2.weight"], probe["head.2.weight"])
    report = (run.root / "report.md").read_text()
    assert "frozen: backbone" in report and "Pretraining" in report
    assert "accuracy" in json.loads((run.root / "metrics.json").read_text())["test"]

    # Fine-tuning or probing later from that pretraining: model.from names the run's pretrain folder.
    task = make_task(recipe(tmp_path, table, model={"arch": "vgg", "from": str(pre)}))
    frame = pd.read_csv(table)
    task.setup(frame)
    model = task.build_model()
    assert task.arch == "vgg" and task.mean == json.loads((pre / "model" / "config.json").read_text())["input_mean"]
    for key, value in frozen.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert model.config.id2label == {0: "blue", 1: "green", 2: "red"}


def test_freezing_leaves_the_body_and_its_statistics_alone_and_trains_the_head(tmp_path, table):
    r = recipe(tmp_path, table, transfer={"freeze": "backbone"})
    task = make_task(r)
    frame = pd.read_csv(table)
    task.setup(frame)
    assert any("random initial weights" in note for note in task.notes())  # no pretrained source: a note
    torch.manual_seed(0)
    model, callbacks = apply_transfer(task.build_model(), r.transfer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"head.2.weight", "head.2.bias"}
    result = fit_loop(model, task.encode(frame), None, task.collate, r.train, tmp_path / "ck", tmp_path / "h.json",
                      compute_metrics=None, metric=None, greater_is_better=True, large_model=False)
    after = result.model.state_dict()
    for key in body_of(before):
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["head.0.running_mean"], after["head.0.running_mean"])  # the probe's own norm
    with torch.no_grad():
        logits = result.model(**task.collate([task.encode(frame)[i] for i in range(len(frame))]))["logits"]
    assert (logits.argmax(1).numpy() == task.label_ids(frame["label"])).mean() > 0.9  # the head learned


def test_a_frozen_vit_backbone_runs_without_dropout_while_its_head_trains():
    torch.manual_seed(0)
    vit = ViTForImageClassification(ViTConfig(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=1,
                                              num_attention_heads=2, intermediate_size=32, num_labels=3,
                                              hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5))
    cfg = recipe_from_dict({"name": "v", "task": "image-classification", "data": {"source": "builtin:iris"},
                            "model": {"arch": "vit"}, "transfer": {"freeze": "backbone"}}).transfer
    model, _ = apply_transfer(vit, cfg)
    model.train()
    x = torch.rand(2, 3, 8, 8)
    first, second = model(pixel_values=x).logits, model(pixel_values=x).logits
    assert torch.equal(first, second)  # dropout at 0.5 would make them differ
    assert not model.vit.training and model.classifier.training
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}


def test_contrastive_pretraining_lowers_its_loss(tmp_path, table):
    r = recipe(tmp_path, table, pretrain={"objective": "contrastive", "epochs": 8, "batch_size": 16, "lr": 0.003})
    metrics = make_task(r).pretrain("contrastive", pd.read_csv(table), tmp_path / "pre", say=lambda _: None)
    losses = [h["loss"] for h in metrics["history"] if "loss" in h]
    assert losses[-1] < losses[0] - 0.3
    saved = ClassicModel.from_pretrained(tmp_path / "pre" / "model")
    assert saved.config.arch == "vgg" and saved.config.input_shape == [3, 8, 8]


def test_views_are_seeded_in_evaluation_and_a_full_crop_is_the_image():
    x = torch.rand(4, 3, 16, 16)
    assert torch.allclose(crop_and_flip(x, (1.0, 1.0), flip=False), x, atol=1e-5)
    view = simclr_view(x, torch.Generator().manual_seed(1))
    assert view.shape == x.shape and view.min() >= 0 and view.max() <= 1
    assert not torch.allclose(view, x)
    net = ClassicModel(ClassicConfig(arch="vgg", input_shape=[3, 16, 16], num_labels=2))
    pretext = Pretext(net, "contrastive").eval()
    with torch.no_grad():
        assert pretext(pixel_values=x)["loss"] == pretext(pixel_values=x)["loss"]


@pytest.mark.parametrize("sections, key, words", [
    ({"transfer": {"freeze": 2}}, "transfer.freeze", "no embeddings or transformer layers"),
    ({"transfer": {"gradual_unfreeze": True}}, "transfer", "for the ViT"),
    ({"model": {"arch": "vit"}, "pretrain": {"objective": "rotation"}}, "pretrain.objective", "convolutional"),
    ({"model": {"arch": "vgg", "channels": [8]}}, "model.channels", "model.size"),
    ({"model": {"arch": "mlp"}, "pretrain": {"objective": "contrastive"}}, "pretrain.objective", "vgg or cnn"),
])
def test_recipes_that_cannot_work_are_refused_by_key(tmp_path, table, sections, key, words):
    with pytest.raises(RecipeError) as err:
        recipe(tmp_path, table, **sections)
    assert key in str(err.value) and words in str(err.value)
