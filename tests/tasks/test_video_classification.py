"""The video task beyond the contract: the frame CNN reads frames in order (a reversed clip is the other
direction), a run trained from a folder of MP4 clips and served with a clip as base64, a corrupt clip at
predict time named, VideoMAE from scratch, and the pretrained path with a tiny random VideoMAE and its image
processor saved locally (what a hub checkpoint such as MCG-NJU/videomae-base is, at a size that loads in a
second)."""

from __future__ import annotations

import base64
import io

import av
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from danlu.cli import app
from danlu.errors import DataError, RecipeError
from danlu.inference import TorchForward
from danlu.recipe import recipe_from_dict
from danlu.tasks import load_task, make_task
from danlu.tasks.video_classification.sample import sample
from danlu.train import fitter


def recipe(**extra):
    base = {"name": "video", "task": "video-classification", "data": {"source": "builtin:iris"}}
    return recipe_from_dict({**base, **sample().recipe, **extra})


def fit(task, frame, r, tmp_path):
    task.setup(frame)
    torch.manual_seed(0)
    return fitter(task.engine)(task.build_model(), task.encode(frame, train=True), None, task.collate, r.train,
                               tmp_path / "ckpt", tmp_path / "h.json", compute_metrics=None, metric=None,
                               greater_is_better=True, large_model=task.large_model).model.eval()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    r = recipe()
    task = make_task(r)
    data = sample(48, 0).frame
    return task, fit(task, data, r, tmp_path_factory.mktemp("video"))


def test_the_frame_cnn_tells_directions_apart_by_the_order_of_the_frames(trained):
    task, model = trained
    held_out = sample(20, 1).frame
    found = [p["label"] for p in task.predict(TorchForward(model), held_out[["video"]])]
    assert np.mean(np.asarray(found) == held_out["label"].to_numpy()) >= 0.9
    # The same frames backwards: every clip should now read as the other direction.
    reversed_clips = pd.DataFrame({"video": pd.Series([c[::-1].copy() for c in held_out["video"]], dtype=object)})
    flipped = [p["label"] for p in task.predict(TorchForward(model), reversed_clips)]
    assert np.mean(np.asarray(flipped) != held_out["label"].to_numpy()) >= 0.9


def test_the_baseline_on_averaged_frames_cannot_tell_directions_and_the_one_on_frames_in_order_can(trained):
    task, _ = trained
    found = task.baseline({"train": sample(48, 0).frame, "test": sample(40, 2).frame}, ["test"])["test"]
    assert found["linear"]["accuracy"] >= 0.9
    assert found["mean_frame"]["accuracy"] <= 0.7  # two classes: chance is 0.5


def mp4_bytes(frames: np.ndarray) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            rgb = np.repeat(frame[..., None], 3, axis=-1) if frame.ndim == 2 else frame
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def clip_folder(root, rows=24):
    data = sample(rows, 0).frame
    for i, (clip, label) in enumerate(zip(data["video"], data["label"])):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i:03d}.mp4").write_bytes(mp4_bytes(clip))
    return root


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    from danlu.pipeline import train

    tmp = tmp_path_factory.mktemp("video-run")
    clip_folder(tmp / "clips")
    r = recipe_from_dict({"name": "clips", "task": "video-classification",
                          "data": {"source": str(tmp / "clips"), "split": {"validation": 2, "test": 4, "seed": 0}},
                          "quality": {"on_fail": "warn"}, **{k: v for k, v in sample().recipe.items()}})
    return train(r, tmp / "run").root


def test_a_run_from_a_folder_of_mp4_clips_records_the_classifier_metrics(video_run):
    import json

    metrics = json.loads((video_run / "metrics.json").read_text())
    assert {"accuracy", "f1_macro", "confusion_matrix"} <= set(metrics["test"])
    assert {"majority", "linear", "mean_frame"} <= set(metrics["baselines"]["test"])
    gate = json.loads((video_run / "data_report.json").read_text())
    assert {"unreadable", "frames", "video_format"} <= {rule["name"] for rule in gate["rules"]}


def test_predict_serves_a_clip_sent_as_base64(video_run):
    from fastapi.testclient import TestClient

    from danlu.serve.app import create_app
    from danlu.serve.app import ServeSettings
    from danlu.serve.runner import load_runner

    clip = base64.b64encode(mp4_bytes(sample(2, 5).frame["video"][0])).decode()
    with TestClient(create_app(load_runner(video_run), ServeSettings())) as client:  # runs startup and shutdown
        good = client.post("/v1/predict", json={"inputs": [{"video": clip}]})
        junk = client.post("/v1/predict", json={"inputs": [{"video": base64.b64encode(b"junk").decode()}]})
    assert good.status_code == 200, good.text
    assert good.json()["predictions"][0]["label"] in {"left", "right"}
    assert junk.status_code == 422 and junk.json()["detail"][0]["loc"] == ["body", "inputs", 0, "video"]


def test_a_corrupt_clip_stops_the_check_with_one_message_naming_it(tmp_path):
    clip_folder(tmp_path / "clips", rows=8)
    (tmp_path / "clips" / "left" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x07" * 300)
    body = {"name": "t", "task": "video-classification",
            "data": {"source": "clips", "split": {"validation": 1, "test": 1}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(body))
    result = CliRunner().invoke(app, ["check", str(tmp_path / "r.yaml")])
    assert result.exit_code != 0
    assert result.output.count("broken.mp4: cannot be read as video") == 1, result.output
    assert "Traceback" not in result.output


def test_predicting_a_corrupt_or_missing_file_names_it(trained, tmp_path):
    task, model = trained
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(DataError, match=r"bad\.mp4: cannot be read as video"):
        task.predict(TorchForward(model), task.frame_from_value(str(tmp_path / "bad.mp4")))
    with pytest.raises(DataError, match="no such video file"):
        task.frame_from_value(str(tmp_path / "gone.mp4"))


def test_recipe_checks_name_the_key_and_the_fix():
    with pytest.raises(RecipeError, match="video.size"):
        recipe(video={"frames": 8, "size": 18})  # two poolings need a multiple of 4
    with pytest.raises(RecipeError, match="video.frames"):
        recipe(model={"arch": "videomae"}, video={"frames": 7, "size": 16, "tubelet": 2})
    with pytest.raises(RecipeError, match="model.arch"):
        recipe(model={"arch": "gpt"})


def test_videomae_from_scratch_trains_and_reloads(tmp_path):
    r = recipe(model={"arch": "videomae", "layers": 1, "embedding": 32, "heads": 2, "feed_forward": 64,
                      "patch_size": 8},
               video={"frames": 4, "size": 16, "tubelet": 2},
               train={"epochs": 1, "batch_size": 8, "progress": False, "precision": "fp32"})
    task = make_task(r)
    data = sample(16, 0).frame
    model = fit(task, data, r, tmp_path)
    assert type(model).__name__ == "VideoMAEForVideoClassification" and model.config.num_frames == 4
    inputs = data[["video"]]
    before = task.predict(TorchForward(model), inputs)
    task.save(model, tmp_path / "model")
    loaded_task, loaded = load_task(tmp_path / "model")
    assert loaded_task.processor is not None
    assert [p["label"] for p in loaded_task.predict(TorchForward(loaded), inputs)] == [p["label"] for p in before]


@pytest.fixture(scope="module")
def videomae_dir(tmp_path_factory):
    """A tiny random VideoMAE classifier (its own classes) and its image processor, laid out as on the hub."""
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEImageProcessorPil

    root = tmp_path_factory.mktemp("videomae")
    config = VideoMAEConfig(image_size=16, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32,
                            num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=5)
    torch.manual_seed(0)
    VideoMAEForVideoClassification(config).save_pretrained(root)
    VideoMAEImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}).save_pretrained(root)
    return root


def test_a_pretrained_videomae_gets_a_new_head_and_reads_its_own_frames(videomae_dir, tmp_path):
    r = recipe(model={"from": str(videomae_dir)}, video={"frames": 8, "size": 32},
               train={"epochs": 1, "batch_size": 8, "progress": False, "precision": "fp32"})
    task = make_task(r)
    data = sample(16, 0).frame
    model = fit(task, data, r, tmp_path)
    assert task.frames == 4  # the checkpoint's num_frames, not video.frames
    assert model.config.num_labels == 2 and set(model.config.id2label.values()) == {"left", "right"}
    batch = task.collate([task.encode(data)[i] for i in range(2)])
    assert tuple(batch["pixel_values"].shape) == (2, 4, 3, 16, 16)  # the processor's crop
    predictions = task.predict(TorchForward(model), data[["video"]])
    task.save(model, tmp_path / "model")
    loaded_task, loaded = load_task(tmp_path / "model")
    assert loaded_task.predict(TorchForward(loaded), data[["video"]]) == predictions
