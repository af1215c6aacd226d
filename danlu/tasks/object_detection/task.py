"""Object detection: an image (a file, an array, uploaded bytes) -> boxes, their classes and scores.

Data: one row per image with an `objects` list of {bbox [x, y, w, h] in pixels, category}, as the COCO
and YOLO readers give it (danlu.data.coco). Every image is resized to a square of model.image_size
(stretched: boxes are kept normalised to [0, 1], so they follow the image, and IoU, hence mAP, does not
change with a per-axis scale); predictions are scaled back to each image's own pixels.

Models (danlu.tasks.object_detection.models): a small CenterNet by default, trained by danlu's plain
loop; DETR, Conditional DETR, RT-DETR and YOLOS from transformers at named sizes or from a checkpoint.
Metrics: COCO mAP, mAP@0.5, mAP@0.75 and per-class AP from pycocotools.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel

from danlu.data.objects_quality import image_size
from danlu.errors import DataError
from danlu.tasks.base import Task, read_meta
from danlu.tasks.images import ImageInputs, as_pil, is_grey, median_side, open_image
from danlu.tasks.object_detection.measure import MIN_EVAL_SCORE, Detections, coco_metrics, decode, truths
from danlu.train.examples import LazyExamples

STATS_SAMPLE = 500  # images whose pixels give the per-channel mean and std
SIZE_RANGE = (32, 512)  # an inferred input side is clamped to this and rounded up to a multiple of 32
GRID_COLUMNS, SHOWN_SIDE = 3, 320  # the report's picture of predicted and true boxes
TRUE_COLOUR, PREDICTED_COLOUR = (40, 200, 60), (230, 40, 40)


class Detected(BaseModel):
    """Boxes in the image's own pixels as COCO writes them, [x, y, width, height], best score first."""

    boxes: list[list[float]]
    labels: list[str]
    scores: list[float]


class ObjectDetection(ImageInputs, Task):
    engine = "loop"

    def __init__(self, spec, recipe=None):
        super().__init__(spec, recipe)
        from danlu.tasks.object_detection.spec import DetectionConfig

        self.cfg = recipe.detection if recipe is not None else DetectionConfig()
        model_cfg = recipe.model if recipe is not None else None
        self.arch = "pretrained" if model_cfg is not None and model_cfg.from_ else (
            (model_cfg.arch if model_cfg is not None else None) or "centernet")
        self.names: list[str] = []
        self.size, self.mode = 64, "RGB"
        self.mean: list[float] = [0.5, 0.5, 0.5]
        self.std: list[float] = [0.25, 0.25, 0.25]
        self.processor = None
        self.skipped_unknown = 0

    @property
    def normalises_input(self) -> bool:
        """CenterNet normalises its own input; the transformers detectors read normalised pixels."""
        return self.arch != "centernet"

    # -- training ----------------------------------------------------------------------
    def setup(self, train: pd.DataFrame, features=(), categorical=()) -> None:
        self.names = category_names(train["objects"])
        if not self.names:
            raise DataError("no training image has an object: detection needs boxes to learn from")
        cfg = self.recipe.model
        self.size = cfg.image_size or _input_side(train["image"])
        if self.arch == "pretrained":
            from transformers import AutoImageProcessor

            from danlu.models import load_pretrained, resolve_pretrained

            self.processor = load_pretrained(AutoImageProcessor, resolve_pretrained(cfg.from_, self.recipe.base_dir))
            self.mean = list(getattr(self.processor, "image_mean", None) or self.mean)
            self.std = list(getattr(self.processor, "image_std", None) or self.std)
            return
        grey = all(is_grey(open_image(v, "RGB", 8)) for v in train["image"].head(50))
        self.mode = "L" if grey and self.arch == "centernet" else "RGB"
        pixels = np.stack([self._pixels(v, raw=True) for v in train["image"].head(STATS_SAMPLE)])
        self.mean = pixels.mean(axis=(0, 2, 3)).round(4).tolist()
        self.std = (pixels.std(axis=(0, 2, 3)) + 1e-6).round(4).tolist()

    def _pixels(self, value, raw: bool = False, img=None) -> np.ndarray:
        img = img if img is not None else open_image(value, self.mode, self.size)
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if self.normalises_input and not raw:
            arr = (arr - np.asarray(self.mean, np.float32)[:, None, None]) / np.asarray(self.std, np.float32)[:, None, None]
        return arr

    def head_labels(self) -> dict:
        return {"id2label": dict(enumerate(self.names)), "label2id": {n: i for i, n in enumerate(self.names)}}

    def build_model(self):
        from danlu.tasks.object_detection import models

        cfg = self.recipe.model
        if self.arch == "pretrained":
            from transformers import AutoModelForObjectDetection

            from danlu.models import load_pretrained, resolve_pretrained

            model = load_pretrained(AutoModelForObjectDetection, resolve_pretrained(cfg.from_, self.recipe.base_dir),
                                    ignore_mismatched_sizes=True, **self.head_labels())
            return model if isinstance(model, models.CenterNetForObjectDetection) else models.SetDetector(model)
        if self.arch == "centernet":
            channels = cfg.channels or models.CENTERNET_SIZES[cfg.size]
            config = models.CenterNetConfig(channels=channels, num_channels=1 if self.mode == "L" else 3,
                                            head_channels=max(16, channels[1]), input_mean=self.mean,
                                            input_std=self.std, **self.head_labels())
            return models.CenterNetForObjectDetection(config)
        import transformers

        config = models.set_detector_config(self.arch, cfg.size, self.size, {
            "d_model": cfg.embedding, "layers": cfg.layers, "heads": cfg.heads, "ffn": cfg.feed_forward,
            "widths": cfg.channels}, **self.head_labels())
        factory = {"detr": transformers.DetrForObjectDetection, "yolos": transformers.YolosForObjectDetection,
                   "rt_detr": transformers.RTDetrForObjectDetection,
                   "conditional_detr": transformers.ConditionalDetrForObjectDetection}[self.arch]
        return models.SetDetector(factory(config))

    def boxes_of(self, objects, value) -> np.ndarray:
        """(n, 5) [class, x1, y1, x2, y2] normalised; objects of a class the model does not know are left
        out (the gate's category rule counts them)."""
        objects = [o for o in (objects if isinstance(objects, (list, tuple, np.ndarray)) else []) if isinstance(o, dict)]
        if not objects:
            return np.zeros((0, 5), dtype=np.float32)
        size = image_size(value)
        if size is None:
            raise DataError(f"cannot read image {value if isinstance(value, (str, Path)) else type(value).__name__}")
        index = {n: i for i, n in enumerate(self.names)}
        rows = []
        for obj in objects:
            cls = index.get(obj.get("category"))
            if cls is None:
                self.skipped_unknown += 1
                continue
            x, y, w, h = (float(v) for v in obj["bbox"])
            rows.append([cls, x / size[0], y / size[1], (x + w) / size[0], (y + h) / size[1]])
        out = np.asarray(rows, dtype=np.float32).reshape(-1, 5)
        out[:, 1:] = out[:, 1:].clip(0, 1)
        return out

    def encode_one(self, row, augment=None) -> dict:
        value, objects = row
        img = open_image(value, self.mode, self.size)
        boxes = self.boxes_of(objects, value) if objects is not None else None
        if augment is not None and boxes is not None:
            img, boxes = augment(img, boxes)
        item = {"pixel_values": self._pixels(value, img=img)}
        if boxes is not None:
            item["labels"] = boxes
        return item

    def encode(self, frame: pd.DataFrame, train: bool = False):
        objects = frame["objects"].tolist() if "objects" in frame.columns else [None] * len(frame)
        rows = list(zip(frame["image"].tolist(), objects))
        if train and self.cfg.augment is not None and "objects" in frame.columns:
            from danlu.tasks.object_detection.augment import Augmented

            return Augmented(rows, self.encode_one, self.cfg.augment, seed=self.recipe.train.seed)
        return LazyExamples(rows, self.encode_one)

    def collate(self, items: list[dict]) -> dict:
        batch = {"pixel_values": torch.as_tensor(np.stack([item["pixel_values"] for item in items]))}
        if "labels" in items[0]:
            batch["labels"] = torch.as_tensor(pad_boxes([item["labels"] for item in items]))
        return batch

    def join_outputs(self, parts: list):
        """The outputs have one shape for the whole run; the padded true boxes differ between batches."""
        if len({p.shape[1:] for p in parts}) == 1:
            return np.concatenate(parts)
        longest = max(p.shape[1] for p in parts)
        return np.concatenate([np.pad(p, ((0, 0), (0, longest - p.shape[1]), (0, 0)), constant_values=-1.0)
                               for p in parts])

    # -- measuring and predicting --------------------------------------------------------
    def detections(self, outputs, min_score: float | None = None) -> list[Detections]:
        threshold = self.cfg.score_threshold if min_score is None else min_score
        return decode(outputs, len(self.names), threshold, self.cfg.max_detections)

    def metrics(self, outputs, label_ids) -> dict:
        return coco_metrics(self.detections(outputs, MIN_EVAL_SCORE), truths(label_ids), self.names)

    def evaluate(self, forward, dataset) -> dict:
        from danlu.inference import outputs

        values, labels = outputs(self, forward, dataset)
        if labels is None:
            raise DataError("evaluation needs the true boxes: the rows have no objects column")
        return self.metrics(values, labels)

    def trainer_metrics(self, eval_pred) -> dict:
        from danlu.evaluate.metrics import scalar_metrics

        return scalar_metrics(self.metrics(np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids)))

    def to_json(self, outputs, sizes: list[tuple[int, int]] | None = None) -> list[dict]:
        """`sizes`: each image's (width, height) to give boxes in its pixels; None: the model's input pixels."""
        out = []
        for i, found in enumerate(self.detections(outputs)):
            w, h = sizes[i] if sizes is not None else (self.size, self.size)
            boxes = found.boxes * np.asarray([w, h, w, h], dtype=np.float32)
            out.append({"boxes": [[round(float(x1), 2), round(float(y1), 2), round(float(x2 - x1), 2),
                                   round(float(y2 - y1), 2)] for x1, y1, x2, y2 in boxes],
                        "labels": [self.names[int(c)] for c in found.labels],
                        "scores": [round(float(s), 4) for s in found.scores]})
        return out

    def predict(self, forward, frame: pd.DataFrame, batch_size: int = 64, lock=None) -> list[dict]:
        from danlu.inference import outputs, require_finite

        dataset = self.encode(frame.drop(columns=["objects"], errors="ignore"))
        values, _ = outputs(self, forward, dataset, batch_size, lock=lock)
        sizes = [image_size(v) or (self.size, self.size) for v in frame["image"]]
        return self.to_json(require_finite(values), sizes)

    def response_item(self) -> type[BaseModel]:
        return Detected

    # -- baseline: every training class's mean box, scored by how common the class is -------------
    def baseline(self, frames: dict[str, pd.DataFrame], splits: list[str]) -> dict:
        train = [self.boxes_of(o, v) for v, o in zip(frames["train"]["image"], frames["train"]["objects"])]
        every = np.concatenate(train) if train else np.zeros((0, 5), np.float32)
        if not len(every):
            return {}
        classes = np.unique(every[:, 0]).astype(int)
        means = np.stack([every[every[:, 0] == c, 1:].mean(0) for c in classes])
        shares = np.asarray([(every[:, 0] == c).mean() for c in classes], dtype=np.float32)
        prior = Detections(means, shares, classes)
        out = {}
        for split in splits:
            frame = frames.get(split)
            if frame is None or not len(frame) or "objects" not in frame:
                continue
            targets = [self.boxes_of(o, v) for v, o in zip(frame["image"], frame["objects"])]
            found = coco_metrics([prior] * len(targets), targets, self.names)
            out[split] = {"prior": {k: v for k, v in found.items() if isinstance(v, (int, float)) and v is not None}}
        return out

    def baseline_names(self) -> dict[str, str]:
        return {"prior": "every training class's mean box on every image, scored by the class's share of the "
                         "training boxes"}

    # -- reporting -----------------------------------------------------------------------
    def report_sections(self, metrics: dict) -> list:
        sections = []
        for split, found in metrics.items():
            per_class = (found or {}).get("per_class_ap") if isinstance(found, dict) else None
            if per_class:
                rows = [[name, f"{ap:.4f}"] for name, ap in sorted(per_class.items(), key=lambda kv: -kv[1])]
                sections.append((f"AP per class: {split}", [("table", ["class", "AP@[.5:.95]"], rows)]))
        return sections

    def after_training(self, model, frames: dict[str, pd.DataFrame]) -> tuple[dict, list]:
        split = next((s for s in ("test", "validation") if s in frames and len(frames[s])), None)
        if split is None or not self.cfg.report_images:
            return {}, []
        from danlu.inference import TorchForward

        shown = frames[split].head(self.cfg.report_images)
        predicted = self.predict(TorchForward(model), shown.drop(columns=["objects"], errors="ignore"))
        png = draw_grid(shown, predicted)
        return {}, [(f"Detections: {split}", [
            ("text", f"the first {len(shown)} {split} images: true boxes in green, predicted in red (label and "
                     f"score, at least {self.cfg.score_threshold:g})"),
            ("image", f"plots/detections_{split}.png", png, f"predicted and true boxes on {split} images")])]

    # -- inputs from outside -------------------------------------------------------------
    def request_item(self):
        from danlu.tasks.object_detection.request import DetectionInput

        return DetectionInput

    def card(self) -> dict:
        return {**super().card(), "input": "image", "classes": self.names}

    def input_facts(self) -> dict:
        return {"input": f"{self.size}x{self.size} {'grey' if self.mode == 'L' else 'RGB'} (stretched)",
                "classes": len(self.names)}

    def notes(self) -> list[str]:
        if self.skipped_unknown:
            return [f"{self.skipped_unknown:,} boxes of classes no training image has were left out of "
                    "training and measuring"]
        return []

    # -- saving --------------------------------------------------------------------------
    def save(self, model, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
        if self.processor is not None:
            self.processor.save_pretrained(out_dir)
        self.save_meta(out_dir, arch=self.arch, names=self.names, size=self.size, mode=self.mode, mean=self.mean,
                       std=self.std)

    def load(self, model_dir: Path):
        from transformers import AutoModelForObjectDetection

        from danlu.tasks.object_detection import models

        models.register()  # danlu's model type, known to the Auto classes
        meta = read_meta(model_dir)
        self.arch, self.names, self.size, self.mode = meta["arch"], meta["names"], meta["size"], meta["mode"]
        self.mean, self.std = meta["mean"], meta["std"]
        model = AutoModelForObjectDetection.from_pretrained(model_dir)
        return model if isinstance(model, models.CenterNetForObjectDetection) else models.SetDetector(model)


def category_names(objects: pd.Series) -> list[str]:
    """The training categories, in COCO id order where every object has an id, else by name."""
    seen: dict[str, int | None] = {}
    for objs in objects:
        for obj in (objs if isinstance(objs, (list, tuple, np.ndarray)) else []):
            if isinstance(obj, dict) and obj.get("category") is not None:
                seen.setdefault(str(obj["category"]), obj.get("category_id"))
    if all(isinstance(i, (int, np.integer)) for i in seen.values()):
        return sorted(seen, key=lambda n: (seen[n], n))
    return sorted(seen)


def pad_boxes(rows: list[np.ndarray]) -> np.ndarray:
    """(B, M, 5) from per-image (n, 5) boxes, padded with class -1 (M >= 1)."""
    longest = max([1] + [len(r) for r in rows])
    out = np.full((len(rows), longest, 5), -1.0, dtype=np.float32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def draw_grid(frame: pd.DataFrame, predicted: list[dict]) -> bytes:
    """PNG: each image (longer side SHOWN_SIDE) with its true boxes and the predicted ones."""
    import io

    from PIL import Image, ImageDraw

    tiles = []
    for value, objects, found in zip(frame["image"], frame["objects"], predicted):
        img = as_pil(value).convert("RGB")
        ratio = SHOWN_SIDE / max(img.size)
        img = img.resize((max(1, round(img.size[0] * ratio)), max(1, round(img.size[1] * ratio))))
        draw = ImageDraw.Draw(img)
        for obj in objects if isinstance(objects, (list, tuple, np.ndarray)) else []:
            x, y, w, h = (float(v) * ratio for v in obj["bbox"])
            draw.rectangle([x, y, x + w, y + h], outline=TRUE_COLOUR, width=2)
        for (x, y, w, h), label, score in zip(found["boxes"], found["labels"], found["scores"]):
            x, y, w, h = (v * ratio for v in (x, y, w, h))
            draw.rectangle([x, y, x + w, y + h], outline=PREDICTED_COLOUR, width=2)
            draw.text((x + 2, max(0, y - 11)), f"{label} {score:.2f}", fill=PREDICTED_COLOUR)
        tiles.append(img)
    columns = min(GRID_COLUMNS, len(tiles))
    rows = -(-len(tiles) // columns)
    grid = Image.new("RGB", (columns * (SHOWN_SIDE + 4), rows * (SHOWN_SIDE + 4)), (255, 255, 255))
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % columns) * (SHOWN_SIDE + 4), (i // columns) * (SHOWN_SIDE + 4)))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()


def _input_side(images: pd.Series) -> int:
    side = median_side(images, SIZE_RANGE)[0]
    return -(-side // 32) * 32
