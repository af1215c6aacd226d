"""Image generation: the Fréchet distance on Gaussians with a known answer, a GAN run end to end on the task's
sample images (metrics, report grids, history), the loop resuming a GAN exactly, `danlu generate` writing
PNGs and POST /v1/generate answering base64 images (FastAPI's TestClient)."""

import base64
import io
import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from danlu import registry
from danlu.errors import DanluError
from danlu.recipe import recipe_from_dict
from danlu.tasks.image_generation.measure import frechet_distance
from danlu.train import loop

SPEC = registry.get("image-generation")


# -- the Fréchet distance ------------------------------------------------------------------------
def test_frechet_distance_of_identical_gaussians_is_zero_and_of_shifted_ones_the_squared_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 6))
    cov = a.T @ a / 50  # a full-rank, non-diagonal covariance
    mu = rng.normal(size=6)
    assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([3.0, -1.0, 0.5, 0.0, 2.0, 0.0])
    assert frechet_distance(mu, cov, mu + shift, cov) == pytest.approx(float(shift @ shift), rel=1e-6)


def test_frechet_distance_of_diagonal_gaussians_is_the_squared_gap_of_the_standard_deviations():
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = float(((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum())  # (1-2)^2 + (2-1)^2 + 0 = 2
    assert frechet_distance(np.zeros(3), np.diag(var1), np.zeros(3), np.diag(var2)) == pytest.approx(expected)


# -- a run end to end ------------------------------------------------------------------------------
def sample_recipe(tmp_path, **gan):
    sample = SPEC.make_sample(60, 0)
    folder = tmp_path / "images"
    for i, (image, label) in enumerate(zip(sample.frame["image"], sample.frame["label"])):
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / label / f"{i:03d}.png")
    keys = {**sample.recipe, "gan": {**sample.recipe["gan"], **gan}}
    return recipe_from_dict({"name": "bars", "task": "image-generation", "quality": {"on_fail": "warn"},
                             "data": {"source": str(folder), "split": {"validation": 0, "test": 0.2, "seed": 0}},
                             "evaluate": {"splits": ["test"]}, **keys})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from danlu.pipeline import train

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("gan")
    return train(sample_recipe(tmp), tmp / "run").root


def test_a_run_records_the_gan_metrics_under_test(run_dir):
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    for key in ("frechet_distance", "frechet_distance_real", "confident_share", "classifier_accuracy",
                "label_agreement"):
        assert np.isfinite(test[key]), key
    assert set(test["class_shares"]) == {"across", "diagonal", "down"}
    assert sum(test["class_shares"].values()) == pytest.approx(1.0)
    assert test["samples"] == 48 and 0 <= test["confident_share"] <= 1
    baselines = json.loads((run_dir / "metrics.json").read_text())["baselines"]["test"]
    assert np.isfinite(baselines["gaussian"]["frechet_distance"])


def test_the_report_shows_both_losses_and_the_previews_as_pngs_in_the_run(run_dir):
    report = (run_dir / "report.md").read_text()
    for name in ("gan_losses.png", "samples_epoch_001.png", "samples_epoch_002.png", "samples_by_class.png"):
        assert f"plots/{name}" in report, name
        Image.open(run_dir / "plots" / name).verify()
    history = json.loads((run_dir / "history.json").read_text())
    per_epoch = [h for h in history if "epoch_loss_generator" in h]
    assert [h["epoch"] for h in per_epoch] == [1.0, 2.0]
    assert all(np.isfinite(h["epoch_loss_discriminator"]) for h in per_epoch)
    assert any("loss_discriminator" in h and "loss_generator" in h for h in history)  # the step logs too


def test_the_saved_model_loads_with_the_auto_class(run_dir):
    from transformers import AutoModel

    from danlu.tasks.image_generation.models import GanModel  # importing it registers the model type

    model = AutoModel.from_pretrained(run_dir / "model")
    assert isinstance(model, GanModel) and (run_dir / "model" / "model.safetensors").exists()


# -- training and resuming ----------------------------------------------------------------------
def fit(tmp_path, task, train_ds, cfg):
    return loop.fit_loop(task.build_model(), train_ds, None, task.collate, cfg, tmp_path / "ckpt",
                         tmp_path / "history.json", compute_metrics=None, metric=None, greater_is_better=False,
                         large_model=False)


def test_a_killed_gan_training_resumes_to_the_same_weights_history_and_previews(tmp_path, monkeypatch):
    from danlu.tasks import make_task

    recipe = sample_recipe(tmp_path)
    sample = SPEC.make_sample(60, 0)
    task = make_task(recipe)
    task.setup(sample.frame)
    train_ds = task.encode(sample.frame, train=True)
    cfg = recipe.train.model_copy(update={"epochs": 3, "checkpoint_every": 4, "keep_checkpoints": 5})
    torch.manual_seed(0)
    full = fit(tmp_path / "full", task, train_ds, cfg)

    def killed(self, *args):
        original(self, *args)
        if self.pos.global_step == 10:  # 8 steps an epoch: mid-way through the second, after checkpoint-8
            raise KeyboardInterrupt

    original = loop._Loop._after_step
    with monkeypatch.context() as patch:
        patch.setattr(loop._Loop, "_after_step", killed)
        torch.manual_seed(0)
        with pytest.raises(KeyboardInterrupt):
            fit(tmp_path / "part", task, train_ds, cfg)
    torch.manual_seed(0)
    resumed = fit(tmp_path / "part", task, train_ds, cfg)
    assert resumed.resumed_from.endswith("checkpoint-8")
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    timeless = [{k: v for k, v in h.items() if "runtime" not in k and "per_second" not in k} for h in full.history]
    assert [{k: v for k, v in h.items() if "runtime" not in k and "per_second" not in k}
            for h in resumed.history] == timeless
    assert [r["preview"] for r in resumed.model.record] == [r["preview"] for r in full.model.record]
    assert len(full.model.record) == 3


def test_a_gan_refuses_gradient_accumulation(tmp_path):
    from danlu.tasks import make_task

    recipe = sample_recipe(tmp_path)
    sample = SPEC.make_sample(60, 0)
    task = make_task(recipe)
    task.setup(sample.frame)
    with pytest.raises(DanluError, match="grad_accum"):
        fit(tmp_path, task, task.encode(sample.frame), recipe.train.model_copy(update={"grad_accum": 2}))


# -- drawing ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loaded(run_dir):
    from danlu.tasks import load_task

    return load_task(run_dir / "model")


def test_generate_images_draws_the_asked_class_and_refuses_an_unknown_one(loaded):
    task, model = loaded
    images, labels = task.generate_images(model, 5, label="down", seed=3)
    assert images.shape == (5, 8, 8, 1) and images.dtype == np.uint8 and labels == ["down"] * 5
    again, _ = task.generate_images(model, 5, label="down", seed=3)
    assert np.array_equal(images, again)  # the seed decides the images
    _, every = task.generate_images(model, 6)
    assert every == ["across", "diagonal", "down"] * 2
    with pytest.raises(DanluError, match="not one of the classes"):
        task.generate_images(model, 2, label="circle")


def test_danlu_generate_writes_the_images_and_their_grid(run_dir, tmp_path):
    from danlu.cli import app

    out = tmp_path / "drawn"
    result = CliRunner().invoke(app, ["generate", str(run_dir), "--n", "6", "--label", "across", "--seed", "1",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [f"{i:04d}_across.png" for i in range(6)] + ["grid.png"]
    assert Image.open(out / "0000_across.png").size == (8, 8)
    refused = CliRunner().invoke(app, ["generate", str(run_dir), "a prompt"])
    assert refused.exit_code == 1 and "takes no prompt" in refused.output


def test_post_v1_generate_answers_base64_pngs_and_422_for_a_bad_label(loaded):
    from danlu.inference import TorchForward
    from danlu.serve.app import create_app
    from danlu.serve.runner import ModelInfo, TaskRunner

    task, model = loaded
    app = create_app(TaskRunner(task, TorchForward(model), ModelInfo(name="bars", task=task.name)))
    with TestClient(app) as client:
        answer = client.post("/v1/generate", json={"n": 3, "label": "diagonal", "seed": 2})
        assert answer.status_code == 200, answer.text
        images = answer.json()["images"]
        assert [i["label"] for i in images] == ["diagonal"] * 3
        assert Image.open(io.BytesIO(base64.b64decode(images[0]["image"]))).size == (8, 8)
        assert client.post("/v1/generate", json={"n": 2, "label": "circle"}).status_code == 422
        assert client.post("/v1/generate", json={"n": 0}).status_code == 422
        scored = client.post("/v1/predict", json={"inputs": [{"image": images[0]["image"]}]})
        assert scored.status_code == 200 and 0 <= scored.json()["predictions"][0]["real_score"] <= 1


def test_the_flops_of_a_gan_step_count_both_updates_and_leave_the_model_as_it_was():
    from torch.utils.flop_counter import FlopCounterMode

    from danlu.tasks.image_generation.models import GanConfig, GanModel
    from danlu.train.utilisation import step_flops

    model = GanModel(GanConfig(image_size=8, latent=4, generator_channels=[8], discriminator_channels=[8]))
    batch = {"pixel_values": torch.rand(4, 1, 8, 8) * 2 - 1, "labels": torch.zeros(4, dtype=torch.int64)}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with FlopCounterMode(display=False) as judged:
        model(**batch)  # the discriminator alone, forward
    counted = step_flops(model, batch)
    # Both updates: the generator forward and backward, the discriminator three times forward and backward.
    assert counted > 6 * judged.get_total_flops()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_post_v1_generate_says_why_for_a_model_that_draws_no_images():
    from danlu.inference import Forward
    from danlu.serve.app import create_app
    from danlu.serve.runner import ModelInfo, TaskRunner
    from danlu.tasks import new_task

    class Unused(Forward):
        def __call__(self, batch):
            raise AssertionError("no prediction is asked for")

    task = new_task("image-classification")
    app = create_app(TaskRunner(task, Unused(), ModelInfo(name="digits", task=task.name)))
    with TestClient(app) as client:
        answer = client.post("/v1/generate", json={"n": 1})
    assert answer.status_code == 404 and "draws no images" in answer.json()["detail"]
