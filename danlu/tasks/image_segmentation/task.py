"""Image segmentation: an image (a file, an array, uploaded bytes) -> a class for every pixel.

Images are read at a square side (model.image_size, else the median side of the training images),
grey when every training image is, scaled to [0, 1] and normalised with the training pixels' mean and
std; masks are resized with the nearest class. Augmentations (segmentation.augment) move the mask with
the image and touch the training split only. Models: danlu's U-Net (models.py, the default), SegFormer
from transformers from a config (model.arch: segformer), or a pretrained checkpoint (model.from: its
own image processor's statistics and side). A SegformerImageProcessor with the same side and statistics
is saved beside the model, so AutoImageProcessor + AutoModelForSemanticSegmentation load a run's model.

Metrics are measured at the model's side (labels resized to it); predictions are upsampled back to each
image's own size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from danlu.errors import DataError
from danlu.models import load_pretrained, resolve_pretrained
from danlu.tasks.base import Task, read_meta
from danlu.tasks.images import ImageInputs, as_pil, is_grey, median_side, open_image
from danlu.tasks.image_segmentation import metrics as measure
from danlu.tasks.image_segmentation.classes import class_names, row_mask
from danlu.tasks.image_segmentation.metrics import IGNORE

STATS_SAMPLE = 500  # training images whose pixels give the mean and std
SIDE_RANGE = (16, 512)
EVAL_BATCH = 16


class ImageSegmentation(ImageInputs, Task):
    def __init__(self, spec, recipe=None):
        super().__init__(spec, recipe)
        from danlu.tasks.image_segmentation.spec import SegmentationConfig

        self.cfg = recipe.segmentation if recipe is not None else SegmentationConfig()
        self.arch = "unet"
        if recipe is not None:
            self.arch = "pretrained" if recipe.model.from_ else (recipe.model.arch or "unet")
        self.classes: list[str] = []
        self.mode, self.size, self.size_source = "RGB", 64, ""
        self.mean: list[float] = []
        self.std: list[float] = []
        self.class_weights: list[float] | None = None

    @property
    def large_model(self) -> bool:
        return self.arch != "unet"

    @property
    def engine(self) -> str:
        return "loop" if self.arch == "unet" else "trainer"

    # -- training ----------------------------------------------------------------------
    def setup(self, train: pd.DataFrame, features=(), categorical=()) -> None:
        self.classes = class_names(train, self.cfg.classes, self.cfg.background)
        cfg = self.recipe.model
        if self.arch == "pretrained":
            from transformers import AutoImageProcessor

            processor = load_pretrained(AutoImageProcessor, self.pretrained_path())
            self.mode, self.mean, self.std = "RGB", list(processor.image_mean), list(processor.image_std)
            side = (processor.size or {}).get("height") or 512
            self.size = cfg.image_size or side
            self.size_source = "model.image_size" if cfg.image_size else "the pretrained image processor"
            return
        self.size, self.size_source = _input_side(cfg.image_size, train["image"], self.side_step())
        grey = all(is_grey(open_image(v, "RGB", 8)) for v in train["image"].head(50))
        self.mode = "L" if grey else "RGB"
        pixels = np.stack([self._pixels(open_image(v, self.mode, self.size))
                           for v in train["image"].head(STATS_SAMPLE)])  # (N, C, H, W)
        self.mean = pixels.mean(axis=(0, 2, 3)).round(4).tolist()
        # a floor: a channel of one value (a blank training set) must not divide by zero
        self.std = np.maximum(pixels.std(axis=(0, 2, 3)), 1e-3).round(4).tolist()
        if self.cfg.class_weights == "sqrt_inverse":
            self.class_weights = loss_weights(self.label_masks(train), len(self.classes))

    def side_step(self) -> int:
        """The input side is a multiple of this: every downsampling of the network halves it evenly."""
        if self.arch == "unet":
            from danlu.tasks.image_segmentation.spec import unet_depth

            return 2 ** unet_depth(self.recipe.model)
        return 32

    def pretrained_path(self) -> str:
        return resolve_pretrained(self.recipe.model.from_, self.recipe.base_dir)

    def build_model(self):
        from danlu.tasks.image_segmentation import models

        cfg = self.recipe.model
        labels = self.head_labels()
        dropout = cfg.dropout or 0.0
        channels = 1 if self.mode == "L" else 3
        if self.arch == "pretrained":
            from transformers import AutoModelForSemanticSegmentation

            return load_pretrained(AutoModelForSemanticSegmentation, self.pretrained_path(),
                                   ignore_mismatched_sizes=True, **labels)
        if self.arch == "segformer":
            from transformers import SegformerForSemanticSegmentation

            return SegformerForSemanticSegmentation(models.segformer_config(cfg.size, channels, dropout, **labels))
        return models.unet(cfg.size, channels, dropout, base_channels=(cfg.channels or [None])[0],
                           depth=cfg.layers, class_weights=self.class_weights, **labels)

    def head_labels(self) -> dict:
        id2label = {i: name for i, name in enumerate(self.classes)}
        return dict(num_labels=len(self.classes), id2label=id2label, label2id={v: k for k, v in id2label.items()})

    # -- examples ------------------------------------------------------------------------
    def _pixels(self, img: Image.Image) -> np.ndarray:
        arr = np.asarray(img, dtype=np.float32) / 255.0
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)

    def mask_at_side(self, row: dict) -> Image.Image:
        """The row's class ids at the model's side; values that are no class become IGNORE."""
        found, _ = row_mask(row, self.classes)
        found = np.where((found >= len(self.classes)) & (found != IGNORE), IGNORE, found).astype(np.uint8)
        return Image.fromarray(found).resize((self.size, self.size), Image.NEAREST)

    def encode_row(self, row: dict, rng: np.random.Generator | None = None) -> dict:
        img = open_image(row["image"], self.mode, self.size)
        mask = self.mask_at_side(row) if _labelled(row) else None
        if mask is not None:
            if rng is not None:
                img, mask = augment(img, mask, self.cfg.augment, rng)
        pixels = self._pixels(img)
        pixels = (pixels - np.asarray(self.mean, np.float32)[:, None, None]) / np.asarray(self.std, np.float32)[:, None, None]
        item = {"pixel_values": pixels.astype(np.float32)}
        if mask is not None:
            item["labels"] = np.asarray(mask, dtype=np.int64)
        return item

    def encode(self, frame: pd.DataFrame, train: bool = False) -> Dataset:
        rows = frame.to_dict("records")
        augmenting = train and any(self.cfg.augment.model_dump().values())
        return Rows(self, rows, self.recipe.train.seed if augmenting and self.recipe else None)

    def collate(self, items: list[dict]) -> dict:
        out = {"pixel_values": torch.as_tensor(np.stack([b["pixel_values"] for b in items]))}
        if all("labels" in b for b in items):
            out["labels"] = torch.as_tensor(np.stack([b["labels"] for b in items]))
        return out

    # -- measuring -------------------------------------------------------------------------
    def evaluate(self, forward, dataset) -> dict:
        matrix = np.zeros((len(self.classes), len(self.classes)), dtype=np.int64)
        for start in range(0, len(dataset), EVAL_BATCH):
            batch = self.collate([dataset[i] for i in range(start, min(start + EVAL_BATCH, len(dataset)))])
            labels = batch.pop("labels", None)
            if labels is None:
                raise DataError("evaluation needs masks: the rows have no mask")
            predicted = class_ids(forward(batch), tuple(labels.shape[-2:]))
            matrix += measure.confusion(labels.numpy(), predicted, len(self.classes))
        return {**measure.segmentation_metrics(matrix, self.classes), "n": len(dataset)}

    def metrics(self, outputs, label_ids) -> dict:
        labels = np.asarray(label_ids)
        matrix = np.zeros((len(self.classes), len(self.classes)), dtype=np.int64)
        for start in range(0, len(labels), EVAL_BATCH):
            part = labels[start:start + EVAL_BATCH]
            predicted = class_ids(np.asarray(outputs[start:start + EVAL_BATCH]), part.shape[-2:])
            matrix += measure.confusion(part, predicted, len(self.classes))
        return {**measure.segmentation_metrics(matrix, self.classes), "n": len(labels)}

    def to_json(self, outputs) -> list[dict]:
        """Logits (N, classes, h, w), or class-id masks at their images' own sizes, -> one answer each."""
        from danlu.tasks.image_segmentation.answers import mask_answer

        masks = class_ids(outputs, np.asarray(outputs).shape[-2:]) if isinstance(outputs, np.ndarray) else outputs
        return [mask_answer(m, self.classes) for m in masks]

    def predict(self, forward, frame: pd.DataFrame, batch_size: int = 64, lock=None) -> list[dict]:
        return self.to_json(self.predict_masks(forward, frame, batch_size))

    def predict_masks(self, forward, frame: pd.DataFrame, batch_size: int = EVAL_BATCH) -> list[np.ndarray]:
        """Each image's class ids at its own size (the logits upsampled to it)."""
        from danlu.inference import require_finite

        images = frame[["image"]]
        dataset = self.encode(images)
        out = []
        for start in range(0, len(images), batch_size):
            end = min(start + batch_size, len(images))
            logits = require_finite(np.asarray(forward(self.collate([dataset[i] for i in range(start, end)]))))
            for one, value in zip(logits, images["image"].iloc[start:end]):
                width, height = as_pil(value).size
                out.append(class_ids(one[None], (height, width))[0])
        return out

    # -- baselines ---------------------------------------------------------------------------
    def label_masks(self, frame: pd.DataFrame) -> np.ndarray:
        """(N, side, side) class ids, as the model is measured on."""
        return np.stack([np.asarray(self.mask_at_side(row), dtype=np.int64) for row in frame.to_dict("records")])

    def baseline(self, frames: dict[str, pd.DataFrame], splits: list[str]) -> dict:
        """The most frequent training class at every pixel; and each pixel's most frequent training class
        at its place (a position prior)."""
        train = self.label_masks(frames["train"])
        k = len(self.classes)
        per_place = np.stack([(train == c).sum(0) for c in range(k)])  # (classes, side, side)
        majority = int(np.argmax(per_place.sum((1, 2))))
        prior = per_place.argmax(0)
        out = {}
        for split in splits:
            if split not in frames or not len(frames[split]):
                continue
            truth = self.label_masks(frames[split])
            found = {}
            for name, guess in (("majority", np.full(truth.shape[1:], majority)), ("prior", prior)):
                matrix = measure.confusion(truth, np.broadcast_to(guess, truth.shape), k)
                scores = measure.segmentation_metrics(matrix, self.classes)
                found[name] = {"miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"]}
            out[split] = found
        return out

    def baseline_names(self) -> dict[str, str]:
        return {"majority": "the most frequent training class at every pixel",
                "prior": "at each pixel, the class most frequent there in the training masks"}

    # -- reporting ------------------------------------------------------------------------------
    def report_sections(self, metrics: dict) -> list:
        splits = [s for s, m in metrics.items() if isinstance(m, dict) and isinstance(m.get("per_class_iou"), dict)]
        if not splits:
            return []
        names = list(metrics[splits[0]]["per_class_iou"])
        rows = [[name, *("–" if metrics[s]["per_class_iou"].get(name) is None else
                         f"{metrics[s]['per_class_iou'][name]:.4f}" for s in splits)] for name in names]
        note = ("text", "IoU per class at the model's input side; a class in neither the masks nor the predictions "
                        "of a split has none (–) and is left out of that split's mIoU.")
        return [("IoU per class", [("table", ["class", *splits], rows), note])]

    def after_training(self, model, frames: dict[str, pd.DataFrame]) -> tuple[dict, list]:
        from danlu.inference import TorchForward
        from danlu.tasks.image_segmentation.overlay import overlay_png

        split = "test" if len(frames.get("test", ())) else "validation"
        shown = frames.get(split, pd.DataFrame()).head(self.cfg.shown)
        if not len(shown):
            return {}, []
        predicted = self.predict_masks(TorchForward(model), shown)
        blocks = []
        for i, (row, mask) in enumerate(zip(shown.to_dict("records"), predicted)):
            truth = row_mask(row, self.classes)[0] if _labelled(row) else None
            image = np.asarray(as_pil(row["image"]).convert("RGB"))
            title = f"{split} image {i + 1}" + (f" ({Path(row['image']).name})" if isinstance(row["image"], str) else "")
            blocks.append(("image", f"plots/segmentation-{i}.png", overlay_png(image, truth, mask, self.classes, title),
                           f"masks on {split} image {i + 1}"))
        return {}, [(f"Masks on {split} images", blocks)]

    def input_facts(self) -> dict:
        return {"input": f"{self.size}x{self.size} {'grey' if self.mode == 'L' else 'RGB'}",
                "classes": len(self.classes)}

    def notes(self) -> list[str]:
        return [f"images are read at {self.size}x{self.size}: {self.size_source}"] if self.size_source else []

    def card(self) -> dict:
        return {**super().card(), "input": "image", "labels": list(self.classes)}

    # -- inputs from outside -------------------------------------------------------------
    def response_item(self):
        from danlu.tasks.image_segmentation.answers import MaskPrediction

        return MaskPrediction

    # -- saving --------------------------------------------------------------------------
    def save(self, model, out_dir: Path) -> None:
        try:  # without torchvision, transformers 5 serves the PIL backend
            from transformers import SegformerImageProcessorPil as Processor
        except ImportError:  # pragma: no cover - older transformers
            from transformers import SegformerImageProcessor as Processor

        model.save_pretrained(out_dir)
        Processor(do_resize=True, size={"height": self.size, "width": self.size}, image_mean=self.mean,
                  image_std=self.std, do_reduce_labels=False).save_pretrained(out_dir)
        self.save_meta(out_dir, classes=self.classes, arch=self.arch, mode=self.mode, size=self.size,
                       mean=self.mean, std=self.std)

    def load(self, model_dir: Path):
        from transformers import AutoModelForSemanticSegmentation

        from danlu.tasks.image_segmentation import models

        models.register()  # danlu's U-Net, known to the Auto classes
        meta = read_meta(model_dir)
        self.classes, self.arch, self.mode, self.size = meta["classes"], meta["arch"], meta["mode"], meta["size"]
        self.mean, self.std = meta["mean"], meta["std"]
        return AutoModelForSemanticSegmentation.from_pretrained(model_dir)


class Rows(Dataset):
    """Rows encoded when read; with a seed, the training split's augmentations drawn afresh at every read."""

    def __init__(self, task: ImageSegmentation, rows: list[dict], seed: int | None = None):
        self.task, self.rows = task, rows
        self.rng = np.random.default_rng(seed) if seed is not None else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.task.encode_row(self.rows[i], self.rng)


def augment(img: Image.Image, mask: Image.Image, cfg, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """The same flips and crop for the image and its mask (the crop resized back: bilinear, nearest)."""
    if cfg.flip and rng.random() < 0.5:
        img, mask = img.transpose(Image.FLIP_LEFT_RIGHT), mask.transpose(Image.FLIP_LEFT_RIGHT)
    if cfg.vflip and rng.random() < 0.5:
        img, mask = img.transpose(Image.FLIP_TOP_BOTTOM), mask.transpose(Image.FLIP_TOP_BOTTOM)
    if cfg.crop:
        side = img.size[0]
        keep = int(round(side * rng.uniform(1 - cfg.crop, 1.0)))
        if keep < side:
            left, top = int(rng.integers(0, side - keep + 1)), int(rng.integers(0, side - keep + 1))
            box = (left, top, left + keep, top + keep)
            img = img.crop(box).resize((side, side), Image.BILINEAR)
            mask = mask.crop(box).resize((side, side), Image.NEAREST)
    return img, mask


def class_ids(logits, size: tuple[int, int]) -> np.ndarray:
    """(N, classes, h, w) logits -> (N, H, W) uint8 class ids, upsampled (bilinear) where h, w differ from size."""
    values = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    if tuple(values.shape[-2:]) != tuple(size):
        values = torch.nn.functional.interpolate(values, size=tuple(int(s) for s in size), mode="bilinear",
                                                 align_corners=False)
    return values.argmax(1).numpy().astype(np.uint8)


def loss_weights(masks: np.ndarray, classes: int) -> list[float]:
    """1 / sqrt(share of the pixels) per class, scaled so the pixel-weighted mean is 1 (a class absent from
    the training masks gets the largest weight present)."""
    counts = np.bincount(masks[masks != IGNORE].reshape(-1).astype(np.int64), minlength=classes)[:classes]
    shares = counts / max(counts.sum(), 1)
    present = shares > 0
    weights = np.zeros(classes)
    weights[present] = shares[present] ** -0.5
    weights[~present] = weights[present].max() if present.any() else 1.0
    return (weights / (shares * weights).sum()).round(4).tolist()


def _labelled(row: dict) -> bool:
    if isinstance(row.get("objects"), list):
        return True
    mask = row.get("mask")
    return mask is not None and not (isinstance(mask, float) and np.isnan(mask))


def _input_side(given: int | None, images: pd.Series, step: int) -> tuple[int, str]:
    """model.image_size, else the median longer side of a sample of training images, clamped to
    SIDE_RANGE and rounded to a multiple of `step`."""
    if given:
        return given, "model.image_size"
    side, median, count = median_side(images, SIDE_RANGE)
    side = max(step, int(round(side / step)) * step)
    return side, f"the median longer side of {count} training images ({median}px), as a multiple of {step}"
