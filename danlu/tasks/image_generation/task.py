"""Image generation: a DCGAN learns to draw images like the training images, unconditionally or one class
at a time (gan.conditional), and is measured by a domain classifier trained on the same images.

Training is the GAN's own two-network update inside danlu's plain loop (danlu.train.loop: a model that
steps itself), so checkpoints, resume and the history are the loop's. A prediction is the discriminator's
verdict: how real an image looks (conditional: as the class it looks most real as). Drawing is
`generate_images` (`danlu generate RUN --n 64 --label 3`, POST /v1/generate).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel
from safetensors.numpy import load_file, save_file

from danlu.errors import DanluError, DataError
from danlu.tasks.base import Task, read_meta
from danlu.tasks.classifier import Classifier, LabelValue
from danlu.tasks.image_classification.task import ImageClassification
from danlu.tasks.images import collate_pixels, open_image
from danlu.tasks.image_generation import models
from danlu.tasks.image_generation.measure import (DomainClassifier, DomainCNN, gaussian_samples,
                                                  train_domain_classifier)
from danlu.train.examples import LazyExamples

CLASSIFIER_DIR, STATS_FILE = "domain_classifier", "train_features.safetensors"
MAX_DRAW = 1024  # images one generate call may ask for


class RealScore(BaseModel):
    real_score: float  # the discriminator's probability that the image is a real one
    label: LabelValue | None = None  # conditional: the class it looks most real as


class ImageGeneration(Task):
    engine = "loop"  # the GAN steps itself inside the plain loop
    metrics_in_trainer = False  # the metrics need generated images, not the loop's logits

    def __init__(self, spec, recipe=None):
        super().__init__(spec, recipe)
        self.labels: list = []
        self.mode, self.size = "L", 28
        self.conditional = bool(recipe.gan.conditional) if recipe else False
        self.instrument: DomainClassifier | None = None
        # How it measures: the recipe's, or (a loaded run) what the run recorded in danlu.json.
        gan = recipe.gan if recipe else None
        self.measuring = {"samples": gan.samples, "seed": gan.seed, "confidence": gan.confidence} if gan else {}
        self.cfg = gan

    # -- training ----------------------------------------------------------------------
    # Class labels as every class-label task keeps them (the ids the conditional GAN and its classifier use).
    fit_labels, label_ids = Classifier.fit_labels, Classifier.label_ids

    def setup(self, train: pd.DataFrame, features=(), categorical=()) -> None:
        self.fit_labels(train["label"])
        first = [open_image(v, "RGB", 8) for v in train["image"].head(50)]
        grey = all(int(np.ptp(np.asarray(img, dtype=np.int16), axis=-1).max()) <= 2 for img in first)
        self.mode = "L" if grey else "RGB"
        self.size = self.recipe.model.image_size or _common_side(train["image"])
        pixels = self.pixels(train["image"])
        self.instrument = train_domain_classifier(pixels, self.label_ids(train["label"]), len(self.labels),
                                                  self.cfg.classifier, self.cfg.seed, self.cfg.samples)

    def _pixels_one(self, value) -> np.ndarray:
        arr = np.asarray(open_image(value, self.mode, self.size), dtype=np.float32) / 255.0
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W) in [0, 1]

    def pixels(self, images: pd.Series) -> torch.Tensor:
        return torch.as_tensor(np.stack([self._pixels_one(v) for v in images]))

    def build_model(self):
        cfg = self.cfg
        blocks = len(cfg.generator.channels)
        if self.size % 2 ** blocks:
            raise DanluError(f"gan.generator.channels: {blocks} blocks double the side {blocks} times, so the image "
                             f"side must be divisible by {2 ** blocks}; it is {self.size} (model.image_size)")
        config = models.GanConfig(
            image_channels=1 if self.mode == "L" else 3, image_size=self.size, latent=cfg.latent,
            conditional=self.conditional, generator_channels=cfg.generator.channels,
            discriminator_channels=cfg.discriminator.channels, spectral_norm=cfg.discriminator.spectral_norm,
            label_smoothing=cfg.label_smoothing, lr_generator=cfg.lr_generator, lr_discriminator=cfg.lr_discriminator,
            betas=cfg.betas, preview=cfg.preview, seed=cfg.seed, id2label={i: str(v) for i, v in enumerate(self.labels)})
        return models.GanModel(config)

    def encode(self, frame: pd.DataFrame, train: bool = False) -> LazyExamples:
        y = self.label_ids(frame["label"]) if "label" in frame.columns else [None] * len(frame)
        return LazyExamples(list(zip(frame["image"].tolist(), y)), self._encode_one)

    def _encode_one(self, row) -> dict:
        value, label = row
        item = {"pixel_values": self._pixels_one(value) * 2 - 1}  # the generator's tanh range
        if label is not None:
            item["labels"] = label
        return item

    def collate(self, items: list[dict]) -> dict:
        return collate_pixels(items)

    # -- measuring -------------------------------------------------------------------------
    def evaluate(self, forward, dataset) -> dict:
        model = getattr(forward, "model", None)
        if model is None:
            raise DanluError("image generation is measured on images its generator draws; this forward has no "
                             "PyTorch model (an ONNX variant): evaluate the run itself")
        real, real_ids = self.real_images(dataset)
        n, seed = self.measuring["samples"], self.measuring["seed"]
        labels = model.preview_labels(n)  # conditional: every class equally often
        generated = model.generate(model.noise(n, seed + 1), labels)  # other noise than the previews'
        return self._require().measure(generated.cpu(), real, real_ids, None if labels is None else labels.numpy(),
                                       self.labels, self.measuring["confidence"])

    def real_images(self, dataset) -> tuple[torch.Tensor, np.ndarray | None]:
        """An encoded split's images as pixels in [0, 1] (N, C, H, W), and their label ids."""
        items = [dataset[i] for i in range(len(dataset))]
        if not items:
            raise DataError("image generation is measured against real images, and this split has none")
        batch = self.collate(items)
        ids = batch.get("labels")
        return (batch["pixel_values"] + 1) / 2, (None if ids is None else ids.numpy())

    def metrics(self, outputs, label_ids) -> dict:
        raise DanluError("image generation's metrics are measured on images the generator draws (evaluate), "
                         "not on outputs computed beforehand")

    def to_json(self, outputs) -> list[dict]:
        logits = np.asarray(outputs, dtype=np.float64)
        best = logits.argmax(1)
        scores = 1 / (1 + np.exp(-logits.max(1)))
        if logits.shape[1] == 1:
            return [{"real_score": float(s)} for s in scores]
        return [{"real_score": float(s), "label": self.labels[int(i)]} for s, i in zip(scores, best)]

    # -- baselines -------------------------------------------------------------------------
    def baseline(self, frames: dict[str, pd.DataFrame], splits: list[str]) -> dict:
        train = frames["train"]
        pixels, ids = self.pixels(train["image"]).numpy(), self.label_ids(train["label"])
        drawn, drawn_ids = gaussian_samples(pixels, ids, self.measuring["samples"], self.measuring["seed"])
        found = {}
        for split in splits:
            frame = frames.get(split)
            if frame is None or not len(frame):
                continue
            real, real_ids = self.real_images(self.encode(frame))
            metrics = self._require().measure(torch.as_tensor(drawn), real, real_ids, drawn_ids, self.labels,
                                              self.measuring["confidence"])
            found[split] = {"gaussian": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        return found

    def baseline_names(self) -> dict[str, str]:
        return {"gaussian": "per class, a Gaussian in pixel space (the mean image and its 20 principal directions)"}

    # -- drawing (capability generate_images) ------------------------------------------------
    def generate_images(self, model, n: int, label=None, seed: int = 0) -> tuple[np.ndarray, list | None]:
        """`n` images (n, H, W, C uint8) drawn from noise seeded by `seed`, and the label each was drawn for:
        `label` for all, or every class in turn (conditional); None for an unconditional model."""
        if not 1 <= n <= MAX_DRAW:
            raise DanluError(f"n: draw between 1 and {MAX_DRAW} images, not {n}")
        ids = None
        if model.config.conditional:
            ids = (torch.full((n,), self._label_id(label)) if label is not None else model.preview_labels(n))
        elif label is not None:
            raise DanluError("label: this GAN is unconditional (gan.conditional: false), so it cannot draw a chosen "
                             "class; leave the label out")
        images = models.to_uint8(model.generate(model.noise(n, seed), ids))
        return images, (None if ids is None else [self.labels[int(i)] for i in ids])

    def _label_id(self, label) -> int:
        names = [str(v) for v in self.labels]
        if str(label) not in names:
            raise DanluError(f"label: '{label}' is not one of the classes the GAN learned: {', '.join(names)}")
        return names.index(str(label))

    def image_grid(self, images: np.ndarray, columns: int | None = None):
        """One PIL image of many (n, H, W, C uint8), `columns` to a row (default: a square)."""
        return models.grid_of(images, columns)

    # -- inputs from outside: an image, read as image classification reads one ------------------
    frame_from_value = ImageClassification.frame_from_value  # a file path on the command line
    request_item = ImageClassification.request_item  # {"image": "<base64>"} in a request
    rows_from_request = ImageClassification.rows_from_request

    def response_item(self) -> type[BaseModel]:
        return RealScore

    def card(self) -> dict:
        extra = {"labels": [str(v) for v in self.labels]} if self.conditional else {}
        return {**super().card(), "input": "image", "draws": f"{self.size}x{self.size} "
                f"{'grey' if self.mode == 'L' else 'RGB'} images", "conditional": self.conditional, **extra}

    def input_facts(self) -> dict:
        return {"images": f"{self.size}x{self.size} {'grey' if self.mode == 'L' else 'RGB'}, in [-1, 1]",
                "conditional": self.conditional}

    # -- reporting -----------------------------------------------------------------------
    def report_sections(self, metrics: dict) -> list:
        from danlu.report import table_cell

        out = []
        for split, found in metrics.items():
            shares = found.get("class_shares") if isinstance(found, dict) else None
            if not shares:
                continue
            rows = [[label, table_cell(share)] for label, share in shares.items()]
            text = (f"How the domain classifier (held-out accuracy {table_cell(found.get('classifier_accuracy'))}) "
                    f"classes {found.get('samples')} generated images; a generator that covers every class evenly "
                    f"gives each 1/{len(shares)}.")
            out.append((f"Class shares of the samples ({split})", [("text", text),
                                                                   ("table", ["class", "share"], rows)]))
        return out

    def after_training(self, model, frames: dict[str, pd.DataFrame]) -> tuple[dict, list]:
        from danlu.tasks.image_generation.pictures import training_sections

        return {}, training_sections(model, self)

    # -- saving --------------------------------------------------------------------------
    def save(self, model, out_dir: Path) -> None:
        out_dir = Path(out_dir)
        model.save_pretrained(out_dir)
        instrument = self._require()
        instrument.model.save(out_dir / CLASSIFIER_DIR)
        save_file({"mu": np.ascontiguousarray(instrument.train_mu), "cov": np.ascontiguousarray(instrument.train_cov)},
                  str(out_dir / CLASSIFIER_DIR / STATS_FILE))
        self.save_meta(out_dir, labels=self.labels, mode=self.mode, size=self.size, conditional=self.conditional,
                       measuring=self.measuring)

    def load(self, model_dir: Path):
        model_dir = Path(model_dir)
        meta = read_meta(model_dir)
        self.labels, self.mode, self.size = list(meta["labels"]), meta["mode"], int(meta["size"])
        self.conditional, self.measuring = bool(meta["conditional"]), dict(meta["measuring"])
        stats = load_file(str(model_dir / CLASSIFIER_DIR / STATS_FILE))
        self.instrument = DomainClassifier(DomainCNN.load(model_dir / CLASSIFIER_DIR),
                                           stats["mu"], stats["cov"])
        return models.GanModel.from_pretrained(model_dir).eval()

    def _require(self) -> DomainClassifier:
        if self.instrument is None:
            raise DanluError("the domain classifier is trained in setup (or loaded with the model); neither happened")
        return self.instrument


def _common_side(images: pd.Series) -> int:
    """The longer side most of the first training images have (a GAN draws one size)."""
    sides = []
    for value in images.head(200):
        try:
            sides.append(_side(value))
        except Exception:  # noqa: BLE001 - an unreadable image is the quality gate's to report
            continue
    if not sides:
        raise DataError("no training image could be read to choose the image size; set model.image_size")
    values, counts = np.unique(sides, return_counts=True)
    return int(values[counts.argmax()])


def _side(value) -> int:
    if isinstance(value, np.ndarray):  # idx images (MNIST)
        return int(max(value.shape[:2]))
    from PIL import Image

    if isinstance(value, Image.Image):
        return max(value.size)
    if isinstance(value, dict):  # the datasets library's Image feature
        value = io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
    with Image.open(value) as image:
        return max(image.size)
