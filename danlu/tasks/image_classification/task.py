"""Image classification: an image (a file, or an array such as MNIST's) -> a class.

Models: a classic MLP, small CNN or VGG of a named size (they normalise their own input, so they
take pixels in [0, 1]), a ViT of a named size built from a config, or a pretrained directory: a
transformers checkpoint, or a classic net (a danlu run, or its pretraining) whose body gets a new
head. ViT and pretrained transformers are fed by a transformers image processor, saved beside the
model so that AutoImageProcessor + AutoModelForImageClassification load it without danlu.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from transformers import AutoImageProcessor, AutoModelForImageClassification, ViTConfig, ViTForImageClassification

try:  # without torchvision, transformers 5 serves the PIL backend (and warns when asked for the default)
    from transformers import ViTImageProcessorPil as ViTImageProcessor
except ImportError:  # pragma: no cover - older transformers
    from transformers import ViTImageProcessor

from danlu.errors import DanluError
from danlu.models import ClassicConfig, ClassicModel, resolve_pretrained, shape_of
from danlu.models.classic import CONVOLUTIONAL, is_classic
from danlu.tasks.base import Task, read_meta
from danlu.tasks.classifier import Classifier
from danlu.tasks.images import ImageInputs, as_pil, collate_pixels, is_grey, median_side, open_image
from danlu.train.examples import LazyExamples

STATS_SAMPLE = 2000  # images used to estimate the per-channel mean and std
SIZE_RANGE = (8, 256)  # an inferred side outside this is clamped (a 1x1 or 6000x6000 outlier must not decide)
BASELINE_SIDE = 16  # the linear baseline reads the images at this side


class ImageClassification(ImageInputs, Classifier, Task):
    def __init__(self, spec, recipe=None):
        super().__init__(spec, recipe)
        self.arch = (recipe.model.arch or "cnn") if recipe else "cnn"
        self.mode, self.size = "RGB", 32
        self.size_source = ""
        self.processor = None
        self.classic_from: str | None = None  # a classic net's folder the model starts from
        self.mean: list[float] = []
        self.std: list[float] = []

    @property
    def large_model(self) -> bool:
        return self.arch in ("vit", "pretrained")

    @property
    def engine(self) -> str:
        return "trainer" if self.large_model else "loop"

    def setup(self, train: pd.DataFrame, features=(), categorical=()) -> None:
        self.fit_labels(train["label"])
        cfg = self.recipe.model
        if cfg.from_:
            source = resolve_pretrained(cfg.from_, self.recipe.base_dir)
            if is_classic(source):
                self._setup_classic_from(source)
                return
            self.arch = "pretrained"
            self.processor = AutoImageProcessor.from_pretrained(source)
            return
        sample = [open_image(v, "RGB", 8) for v in train["image"].head(50)]
        grey = all(is_grey(img) for img in sample)
        self.size, self.size_source = _input_side(cfg.image_size, train["image"])
        # ViT keeps three channels so that pretrained processors and checkpoints fit it later.
        self.mode = "L" if grey and self.arch != "vit" else "RGB"
        pixels = np.stack([self._pixels(v) for v in train["image"].head(STATS_SAMPLE)])  # (N, C, H, W)
        self.mean = pixels.mean(axis=(0, 2, 3)).round(4).tolist()
        self.std = (pixels.std(axis=(0, 2, 3)) + 1e-6).round(4).tolist()
        if self.arch == "vit":
            self.processor = ViTImageProcessor(do_resize=True, size={"height": self.size, "width": self.size},
                                               image_mean=self.mean, image_std=self.std)

    def _setup_classic_from(self, folder: str) -> None:
        """The classic net's own input (side, channels, pixel statistics): its body was trained on it."""
        config = ClassicModel.from_pretrained(folder).config
        if config.arch not in CONVOLUTIONAL:
            raise DanluError(f"model.from: {folder} holds a {config.arch} net; image classification starts "
                             f"from a cnn or vgg body")
        self.classic_from, self.arch = folder, config.arch
        channels, self.size = config.input_shape[0], config.input_shape[1]
        self.mode = "L" if channels == 1 else "RGB"
        self.mean, self.std = config.input_mean, config.input_std
        self.size_source = f"the size the model in model.from was trained at ({folder})"

    def _pixels(self, value) -> np.ndarray:
        arr = np.asarray(open_image(value, self.mode, self.size), dtype=np.float32) / 255.0
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)

    def build_model(self):
        cfg = self.recipe.model
        labels = self.head_labels()
        if self.arch == "pretrained":
            return AutoModelForImageClassification.from_pretrained(
                resolve_pretrained(cfg.from_, self.recipe.base_dir), ignore_mismatched_sizes=True, **labels)
        if self.arch == "vit":
            return ViTForImageClassification(self.vit_config(**labels))
        if self.classic_from:
            return _classic_with_new_head(self.classic_from, labels)
        channels = 1 if self.mode == "L" else 3
        config = ClassicConfig(
            arch=self.arch, input_shape=[channels, self.size, self.size],
            hidden=cfg.hidden if cfg.hidden is not None else [128], channels=cfg.channels or [32, 64],
            activation=cfg.activation or "relu", dropout=cfg.dropout or 0.0, size=cfg.size,
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
            img = open_image(value, "RGB", self.size) if self.arch == "vit" else as_pil(value).convert("RGB")
            pixels = self.processor(images=img, return_tensors="np")["pixel_values"][0]
        else:
            pixels = self._pixels(value)
        item = {"pixel_values": pixels.astype(np.float32)}
        if label is not None:
            item["labels"] = label
        return item

    def encode(self, frame: pd.DataFrame, train: bool = False) -> LazyExamples:
        y = self.label_ids(frame["label"]) if "label" in frame.columns else [None] * len(frame)
        return LazyExamples(list(zip(frame["image"].tolist(), y)), self.encode_one)

    def collate(self, items: list[dict]) -> dict:
        return collate_pixels(items)

    # -- baseline: logistic regression on the pixels of a small copy of each image -------------
    def baseline_features(self, train: pd.DataFrame, frames: dict[str, pd.DataFrame]):
        mode = "L" if self.mode == "L" else "RGB"

        def pixels(frame: pd.DataFrame) -> np.ndarray:
            return np.stack([np.asarray(open_image(v, mode, BASELINE_SIDE), dtype=np.float32).reshape(-1) / 255.0
                             for v in frame["image"]])

        return pixels(train), {s: pixels(f) for s, f in frames.items()}

    def baseline_names(self) -> dict[str, str]:
        return {"majority": "always the most frequent training class",
                "linear": f"logistic regression on the pixels at {BASELINE_SIDE}x{BASELINE_SIDE}"}

    # -- pretraining -----------------------------------------------------------------------
    def pretrain(self, objective: str, train: pd.DataFrame, out: Path, say, callbacks=()) -> dict:
        from danlu.tasks.image_classification.pretrain import pretrain_mim_stage, pretrain_pretext_stage

        if objective == "mim":
            return pretrain_mim_stage(self, train, out, say, callbacks)
        return pretrain_pretext_stage(self, train, out, say)

    def card(self) -> dict:
        return {**super().card(), "input": "image"}

    def input_facts(self) -> dict:
        if self.arch == "pretrained":
            return {"input": "the pretrained model's image processor"}
        return {"input": f"{self.size}x{self.size} {'grey' if self.mode == 'L' else 'RGB'}"}

    def notes(self) -> list[str]:
        out = [f"images are read at {self.size}x{self.size}: {self.size_source}"] if self.size_source else []
        transfer = self.recipe.transfer if self.recipe is not None else None
        if transfer is not None and transfer.freeze == "backbone" and not self.recipe.model.from_:
            out.append("transfer.freeze: backbone with no pretrained source (pretrain or model.from): the body "
                       "keeps its random initial weights and only the head trains, a random-features baseline")
        return out

    # -- saving --------------------------------------------------------------------------
    def save(self, model, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
        if self.processor is not None:
            self.processor.save_pretrained(out_dir)
        self.save_meta(out_dir, **self.label_meta(), arch=self.arch, mode=self.mode, size=self.size)

    def load(self, model_dir: Path):
        meta = read_meta(model_dir)
        self.load_labels(meta)
        self.arch, self.mode, self.size = meta["arch"], meta["mode"], meta["size"]
        if self.arch in ("vit", "pretrained"):
            self.processor = AutoImageProcessor.from_pretrained(model_dir)
            return AutoModelForImageClassification.from_pretrained(model_dir)
        return ClassicModel.from_pretrained(model_dir)


def _classic_with_new_head(folder: str, labels: dict) -> ClassicModel:
    """The classic net in `folder` with a freshly initialised head for this task's classes."""
    old = ClassicModel.from_pretrained(folder)
    config = ClassicConfig.from_dict({**old.config.to_dict(), **labels})
    model = ClassicModel(config)
    body = {k: v for k, v in old.state_dict().items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(body, strict=False)
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise DanluError(f"model.from: {folder} does not fit its own config.json "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model


def _input_side(given: int | None, images: pd.Series) -> tuple[int, str]:
    """The side images are resized to, and why: the recipe's model.image_size, else the median longer
    side of a sample of training images, clamped to SIZE_RANGE."""
    if given:
        return given, "model.image_size"
    side, median, count = median_side(images, SIZE_RANGE)
    clamped = "" if side == median else f", clamped to {SIZE_RANGE[0]}-{SIZE_RANGE[1]}"
    return side, f"the median longer side of {count} training images ({median}px{clamped})"
