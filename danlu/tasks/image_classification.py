"""Image classification: an image (a file, or an array such as MNIST's) -> a class.

Models: a classic MLP or small CNN (they normalise their own input, so they take pixels in
[0, 1]), a ViT of a named size built from a config, or a pretrained directory. ViT and
pretrained models are fed by a transformers image processor, saved beside the model so that
AutoImageProcessor + AutoModelForImageClassification load it without danlu.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification, ViTConfig, ViTForImageClassification

try:  # without torchvision, transformers 5 serves the PIL backend (and warns when asked for the default)
    from transformers import ViTImageProcessorPil as ViTImageProcessor
except ImportError:  # pragma: no cover - older transformers
    from transformers import ViTImageProcessor

from danlu.errors import DataError
from danlu.models import ClassicConfig, ClassicModel, resolve_pretrained, shape_of
from danlu.tasks.base import LazyExamples, Task

STATS_SAMPLE = 2000  # images used to estimate the per-channel mean and std


def open_image(value, mode: str, size: int) -> Image.Image:
    """A path, an array, a PIL image or a hub record ({bytes, path}) -> a PIL image in `mode`, size x size."""
    try:
        img = _as_pil(value).convert(mode)
    except Exception as exc:  # PIL raises many types for a broken file
        where = value if isinstance(value, (str, Path)) else f"({type(value).__name__})"
        raise DataError(f"cannot read image {where}: {exc}") from None
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return img


def _as_pil(value) -> Image.Image:
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, (str, Path)):
        return Image.open(value)
    if isinstance(value, dict):  # the datasets library's Image feature, undecoded
        return Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else Image.open(value["path"])
    return Image.fromarray(np.asarray(value))


class ImageClassification(Task):
    name = "image-classification"
    roles = ("image", "label")
    input_roles = ("image",)

    def __init__(self, recipe=None):
        super().__init__(recipe)
        self.arch = (recipe.model.arch or "cnn") if recipe else "cnn"
        self.mode, self.size = "RGB", 32
        self.processor = None
        self.mean: list[float] = []
        self.std: list[float] = []

    @property
    def large_model(self) -> bool:
        return self.arch in ("vit", "pretrained")

    def setup(self, train: pd.DataFrame, features=None, categorical=None) -> None:
        self.fit_labels(train["label"])
        cfg = self.recipe.model
        if cfg.from_:
            self.arch = "pretrained"
            self.processor = AutoImageProcessor.from_pretrained(resolve_pretrained(cfg.from_, self.recipe.base_dir))
            return
        sample = [open_image(v, "RGB", 8) for v in train["image"].head(50)]
        grey = all(_is_grey(img) for img in sample)
        self.size = cfg.image_size or max(_as_pil(train["image"].iloc[0]).size)
        # ViT keeps three channels so that pretrained processors and checkpoints fit it later.
        self.mode = "L" if grey and self.arch != "vit" else "RGB"
        pixels = np.stack([self._pixels(v) for v in train["image"].head(STATS_SAMPLE)])  # (N, C, H, W)
        self.mean = pixels.mean(axis=(0, 2, 3)).round(4).tolist()
        self.std = (pixels.std(axis=(0, 2, 3)) + 1e-6).round(4).tolist()
        if self.arch == "vit":
            self.processor = ViTImageProcessor(do_resize=True, size={"height": self.size, "width": self.size},
                                               image_mean=self.mean, image_std=self.std)

    def _pixels(self, value) -> np.ndarray:
        arr = np.asarray(open_image(value, self.mode, self.size), dtype=np.float32) / 255.0
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)

    def build_model(self):
        cfg = self.recipe.model
        labels = dict(num_labels=len(self.labels), id2label=self.id2label,
                      label2id={v: k for k, v in self.id2label.items()})
        if self.arch == "pretrained":
            return AutoModelForImageClassification.from_pretrained(
                resolve_pretrained(cfg.from_, self.recipe.base_dir), ignore_mismatched_sizes=True, **labels)
        if self.arch == "vit":
            return ViTForImageClassification(self.vit_config(**labels))
        channels = 1 if self.mode == "L" else 3
        config = ClassicConfig(
            arch=self.arch, input_shape=[channels, self.size, self.size],
            hidden=cfg.hidden if cfg.hidden is not None else [128], channels=cfg.channels or [32, 64],
            activation=cfg.activation or "relu", dropout=cfg.dropout or 0.0,
            input_mean=self.mean, input_std=self.std, **labels,
        )
        return ClassicModel(config)

    def vit_config(self, **extra) -> ViTConfig:
        """The ViT's shape from the recipe (named size + overrides) for this task's image size; masked
        image modelling builds its ViTForMaskedImageModeling from the same config."""
        cfg = self.recipe.model
        shape = shape_of(cfg)
        dropout = 0.0 if cfg.dropout is None else cfg.dropout
        patch = cfg.patch_size or max(2, self.size // 8)
        return ViTConfig(
            image_size=self.size, patch_size=patch, num_channels=3, encoder_stride=patch,
            hidden_size=shape["embedding"], num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
            intermediate_size=shape["feed_forward"], hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout, **extra,
        )

    def encode_one(self, row) -> dict:
        value, label = row
        if self.processor is not None:
            img = open_image(value, "RGB", self.size) if self.arch == "vit" else _as_pil(value).convert("RGB")
            pixels = self.processor(images=img, return_tensors="np")["pixel_values"][0]
        else:
            pixels = self._pixels(value)
        item = {"pixel_values": pixels.astype(np.float32)}
        if label is not None:
            item["labels"] = label
        return item

    def encode(self, frame: pd.DataFrame) -> LazyExamples:
        y = self.label_ids(frame["label"]) if "label" in frame.columns else [None] * len(frame)
        return LazyExamples(list(zip(frame["image"].tolist(), y)), self.encode_one)

    def collate(self, batch: list[dict]) -> dict:
        out = {"pixel_values": torch.as_tensor(np.stack([b["pixel_values"] for b in batch]))}
        if "labels" in batch[0]:
            out["labels"] = torch.as_tensor(np.asarray([b["labels"] for b in batch], dtype=np.int64))
        return out

    def save(self, model, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
        if self.processor is not None:
            self.processor.save_pretrained(out_dir)
        self.save_meta(out_dir, arch=self.arch, mode=self.mode, size=self.size)

    @classmethod
    def load(cls, model_dir: Path):
        meta = cls.read_meta(model_dir)
        task = cls()
        task.labels, task.arch, task.mode, task.size = meta["labels"], meta["arch"], meta["mode"], meta["size"]
        if task.arch in ("vit", "pretrained"):
            task.processor = AutoImageProcessor.from_pretrained(model_dir)
            return task, AutoModelForImageClassification.from_pretrained(model_dir)
        return task, ClassicModel.from_pretrained(model_dir)


def _is_grey(img: Image.Image) -> bool:
    arr = np.asarray(img, dtype=np.int16)
    return bool(np.abs(arr[..., 0] - arr[..., 1]).max() <= 2 and np.abs(arr[..., 1] - arr[..., 2]).max() <= 2)
