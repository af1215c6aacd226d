"""Video classification: a clip (a video file, a folder of frames, uploaded bytes) -> a class.

A clip is read by danlu.data.video (PyAV): `video.frames` frames sampled uniformly over it, each resized
to a `video.size` square, RGB. Models: `cnn` (danlu's frame CNN with temporal convolutions, which
normalises its own input, so it takes pixels in [0, 1]), `videomae` (transformers' VideoMAE at a named
ViT size), or a pretrained video classifier (`model.from`, e.g. a VideoMAE checkpoint). VideoMAE models
are fed by a transformers image processor saved beside the model, so AutoImageProcessor +
AutoModelForVideoClassification load a run's model without danlu's data code.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from danlu.data.video import load_clip
from danlu.errors import DataError
from danlu.models import load_pretrained, resolve_pretrained, shape_of
from danlu.tasks.base import Task, read_meta
from danlu.tasks.classifier import Classifier
from danlu.tasks.images import collate_pixels
from danlu.train.examples import LazyExamples

STATS_SAMPLE = 200  # training clips that estimate the per-channel mean and std
BASELINE_SIDE = 8  # the linear baseline reads every sampled frame at this side, grey


class VideoClassification(Classifier, Task):
    def __init__(self, spec, recipe=None):
        super().__init__(spec, recipe)
        from danlu.tasks.video_classification.spec import VideoConfig

        video = recipe.video if recipe is not None else VideoConfig()
        self.frames, self.size = video.frames, video.size
        self.arch = ("pretrained" if recipe.model.from_ else recipe.model.arch or "cnn") if recipe else "cnn"
        self.processor = None
        self.mean: list[float] = [0.0, 0.0, 0.0]
        self.std: list[float] = [1.0, 1.0, 1.0]
        # A clip's sampled frames by path, uint8: training reads every clip each epoch, the baseline again.
        self._clips: dict[str, np.ndarray] = {}

    @property
    def large_model(self) -> bool:
        return self.arch != "cnn"

    @property
    def engine(self) -> str:
        return "loop" if self.arch == "cnn" else "trainer"

    # -- reading clips -------------------------------------------------------------------
    def clip(self, value) -> np.ndarray:
        """(frames, size, size, 3) uint8; a pretrained processor resizes itself, so it gets them unresized."""
        key = value if isinstance(value, str) else None
        if key is not None and key in self._clips:
            return self._clips[key]
        found = load_clip(value, self.frames, None if self.arch == "pretrained" else self.size)
        if key is not None and self.arch != "pretrained":
            self._clips[key] = found
        return found

    def read_all(self, values) -> list[np.ndarray]:
        with ThreadPoolExecutor(max_workers=4) as pool:  # FFmpeg decodes outside the GIL
            return list(pool.map(self.clip, values))

    def pixels(self, clip: np.ndarray) -> np.ndarray:
        """(frames, 3, H, W) float32 as the model reads them."""
        if self.processor is not None:
            return self.processor(list(clip), return_tensors="np")["pixel_values"][0].astype(np.float32)
        return clip.transpose(0, 3, 1, 2).astype(np.float32) / 255.0

    # -- training ----------------------------------------------------------------------
    def setup(self, train: pd.DataFrame, features=(), categorical=()) -> None:
        self.fit_labels(train["label"])
        if self.arch == "pretrained":
            from transformers import AutoConfig, AutoImageProcessor

            path = self.pretrained_path()
            self.processor = load_pretrained(AutoImageProcessor, path)
            self.frames = int(getattr(AutoConfig.from_pretrained(path), "num_frames", None) or self.frames)
            return
        pixels = np.concatenate([c.reshape(-1, 3) for c in self.read_all(train["video"].head(STATS_SAMPLE).tolist())])
        pixels = pixels.astype(np.float32) / 255.0
        self.mean = pixels.mean(axis=0).round(4).tolist()
        self.std = (pixels.std(axis=0) + 1e-6).round(4).tolist()
        if self.arch == "videomae":
            from transformers import VideoMAEImageProcessorPil

            self.processor = VideoMAEImageProcessorPil(size={"height": self.size, "width": self.size},
                                                       do_center_crop=False, image_mean=self.mean,
                                                       image_std=self.std)

    def pretrained_path(self) -> str:
        return resolve_pretrained(self.recipe.model.from_, self.recipe.base_dir)

    def build_model(self):
        cfg = self.recipe.model
        labels = self.head_labels()
        dropout = 0.1 if cfg.dropout is None else cfg.dropout
        if self.arch == "pretrained":
            from transformers import AutoModelForVideoClassification

            return load_pretrained(AutoModelForVideoClassification, self.pretrained_path(),
                                   ignore_mismatched_sizes=True, **labels)
        from danlu.tasks.video_classification import models

        if self.arch == "videomae":
            shape = shape_of(cfg.model_copy(update={"arch": "vit"}))  # VideoMAE's encoder is a ViT
            return models.videomae_model(shape, self.frames, self.size, cfg.patch_size or 16,
                                         self.recipe.video.tubelet, dropout, **labels)
        config = models.FrameConvConfig(num_frames=self.frames, image_size=self.size,
                                        channels=cfg.channels or [16, 32, 32], hidden_size=cfg.embedding or 64,
                                        temporal_layers=cfg.layers or 2, dropout=dropout, input_mean=self.mean,
                                        input_std=self.std, **labels)
        return models.FrameConvForVideoClassification(config)

    def encode(self, frame: pd.DataFrame, train: bool = False) -> LazyExamples:
        y = self.label_ids(frame["label"]) if "label" in frame.columns else [None] * len(frame)
        clips = self.read_all(frame["video"].tolist())  # decoded once, up front; a bad clip stops here
        return LazyExamples(list(zip(clips, y)), self.encode_one)

    def encode_one(self, row) -> dict:
        clip, label = row
        item = {"pixel_values": self.pixels(clip)}
        if label is not None:
            item["labels"] = label
        return item

    def collate(self, items: list[dict]) -> dict:
        return collate_pixels(items)

    # -- baselines: logistic regression on the sampled frames, in order and averaged ------------
    def small_frames(self, frame: pd.DataFrame) -> np.ndarray:
        """(clips, frames, BASELINE_SIDE**2): every sampled frame at a small side, grey, in [0, 1]."""
        return np.stack([[np.asarray(Image.fromarray(f).convert("L").resize((BASELINE_SIDE, BASELINE_SIDE),
                                                                             Image.BILINEAR), dtype=np.float32)
                          .ravel() / 255.0 for f in clip] for clip in self.read_all(frame["video"].tolist())])

    def baseline_features(self, train: pd.DataFrame, frames: dict[str, pd.DataFrame]):
        def flat(frame: pd.DataFrame) -> np.ndarray:
            return self.small_frames(frame).reshape(len(frame), -1)

        return flat(train), {s: flat(f) for s, f in frames.items()}

    def baseline(self, frames: dict[str, pd.DataFrame], splits: list[str]) -> dict:
        """The classifier baselines, and the same logistic regression on the mean of the sampled frames: what
        pooling over time alone sees (it cannot tell a clip from its reverse)."""
        from danlu.evaluate import baselines

        out = super().baseline(frames, splits)
        train = frames["train"]
        names = [str(v) for v in self.labels]
        pooled = baselines.fit_linear_classifier(self.small_frames(train).mean(1), self.label_ids(train["label"]),
                                                 seed=self.recipe.train.seed)
        for split in out:
            x = self.small_frames(frames[split]).mean(1)
            out[split]["mean_frame"] = baselines.classifier_metrics(pooled, x, self.label_ids(frames[split]["label"]),
                                                                    names, self._rare_id())
        return out

    def baseline_names(self) -> dict[str, str]:
        side = f"{BASELINE_SIDE}x{BASELINE_SIDE} grey"
        return {"majority": "always the most frequent training class",
                "linear": f"logistic regression on the pixels of the {self.frames} sampled frames at {side}",
                "mean_frame": f"logistic regression on the mean of the sampled frames at {side} (no order)"}

    # -- inputs from outside -------------------------------------------------------------
    def frame_from_value(self, value: str) -> pd.DataFrame:
        if not Path(value).exists():
            raise DataError(f"{value}: no such video file or frame folder")
        return pd.DataFrame({"video": [value]})

    def request_item(self):
        from danlu.tasks.video_classification.request import VideoInput

        return VideoInput

    def rows_from_request(self, inputs: list) -> list[dict]:
        return [{"video": {"bytes": value.video}} for value in inputs]  # danlu.data.video reads this form

    def card(self) -> dict:
        return {**super().card(), "input": "video", "frames": self.frames}

    def input_facts(self) -> dict:
        if self.arch == "pretrained":
            return {"input": f"{self.frames} frames sampled uniformly, through the pretrained model's image processor"}
        return {"input": f"{self.frames} frames sampled uniformly, each {self.size}x{self.size} RGB"}

    # -- saving --------------------------------------------------------------------------
    def save(self, model, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
        if self.processor is not None:
            self.processor.save_pretrained(out_dir)
        self.save_meta(out_dir, **self.label_meta(), arch=self.arch, frames=self.frames, size=self.size)

    def load(self, model_dir: Path):
        from transformers import AutoImageProcessor, AutoModelForVideoClassification

        from danlu.tasks.video_classification import models

        models.register()  # danlu's model type, known to the Auto classes
        meta = read_meta(model_dir)
        self.load_labels(meta)
        self.arch, self.frames, self.size = meta["arch"], meta["frames"], meta["size"]
        if self.arch != "cnn":
            self.processor = AutoImageProcessor.from_pretrained(model_dir)
        return AutoModelForVideoClassification.from_pretrained(model_dir)
