"""From the detectors' outputs to boxes, and COCO's metrics on them (pycocotools' COCOeval).

Boxes here are normalised corners [x1, y1, x2, y2] in [0, 1]. IoU does not change when both axes are
scaled, so the metrics are computed on a virtual EVAL_SIDE-pixel square whatever the images' sizes
(COCO's small/medium/large splits would change, and are not reported).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np

EVAL_SIDE = 1000.0
MIN_EVAL_SCORE = 1e-3  # the metrics rank boxes down to this score (COCO keeps the best 100 per image)


@dataclass
class Detections:
    boxes: np.ndarray  # (n, 4) normalised x1, y1, x2, y2
    scores: np.ndarray  # (n,)
    labels: np.ndarray  # (n,) class ids


def decode(outputs: np.ndarray, classes: int, min_score: float, top: int) -> list[Detections]:
    """One Detections per image: a CenterNet map (B, C + 4, H, W) or a set detector's (B, Q, scores + 4)."""
    outputs = np.asarray(outputs, dtype=np.float32)
    if outputs.ndim == 4:
        return [_decode_map(o, classes, min_score, top) for o in outputs]
    return [_decode_set(o, classes, min_score, top) for o in outputs]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def _decode_map(out: np.ndarray, classes: int, min_score: float, top: int) -> Detections:
    import torch

    heat = torch.sigmoid(torch.as_tensor(out[:classes]))[None]
    # A peak is a cell no higher than none of its 8 neighbours: CenterNet's NMS.
    peaks = (heat == torch.nn.functional.max_pool2d(heat, 3, stride=1, padding=1)).float() * heat
    flat = peaks[0].reshape(-1).numpy()
    order = np.argsort(-flat, kind="stable")[:top]
    order = order[flat[order] >= min_score]
    _, height, width = out[:classes].shape
    cls, cell = np.divmod(order, height * width)
    iy, ix = np.divmod(cell, width)
    w, h = out[classes, iy, ix], out[classes + 1, iy, ix]
    cx, cy = ix + out[classes + 2, iy, ix], iy + out[classes + 3, iy, ix]
    boxes = np.stack([(cx - w / 2) / width, (cy - h / 2) / height, (cx + w / 2) / width, (cy + h / 2) / height], -1)
    return Detections(np.clip(boxes, 0, 1).reshape(-1, 4), flat[order], cls)


def _decode_set(out: np.ndarray, classes: int, min_score: float, top: int) -> Detections:
    logits, boxes = out[:, :-4], out[:, -4:]
    if logits.shape[1] == classes + 1:  # DETR, YOLOS: softmax with a last "no object" class
        shifted = np.exp(logits - logits.max(1, keepdims=True))
        probs = (shifted / shifted.sum(1, keepdims=True))[:, :classes]
    else:  # Conditional DETR, RT-DETR: a sigmoid per class
        probs = _sigmoid(logits[:, :classes])
    flat = probs.reshape(-1)
    order = np.argsort(-flat, kind="stable")[:top]
    order = order[flat[order] >= min_score]
    query, cls = np.divmod(order, classes)
    return Detections(np.clip(boxes[query], 0, 1).reshape(-1, 4), flat[order], cls)


def truths(label_ids: np.ndarray) -> list[np.ndarray]:
    """(n, 5) [class, x1, y1, x2, y2] per image from the padded labels (class -1 pads)."""
    return [rows[rows[:, 0] >= 0] for rows in np.asarray(label_ids, dtype=np.float32)]


def coco_metrics(detections: list[Detections], targets: list[np.ndarray], names: list[str]) -> dict:
    """map, map_50, map_75 (COCOeval, every area, up to 100 boxes per image), per_class_ap (classes with a
    true box in the split) and n (images)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for image_id, (found, target) in enumerate(zip(detections, targets), start=1):
        images.append({"id": image_id, "width": EVAL_SIDE, "height": EVAL_SIDE})
        for cls, *corners in target:
            x1, y1, x2, y2 = np.asarray(corners) * EVAL_SIDE
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(cls) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for (x1, y1, x2, y2), score, cls in zip(found.boxes * EVAL_SIDE, found.scores, found.labels):
            results.append({"image_id": image_id, "category_id": int(cls) + 1, "score": float(score),
                            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]})
    out = {"n": len(images)}
    if not annotations:
        return {**out, "map": None, "map_50": None, "map_75": None, "per_class_ap": {}}
    if not results:
        present = sorted({a["category_id"] for a in annotations})
        return {**out, "map": 0.0, "map_50": 0.0, "map_75": 0.0, "per_class_ap": {names[c - 1]: 0.0 for c in present}}
    truth = COCO()
    truth.dataset = {"images": images, "annotations": annotations,
                     "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and summary
        truth.createIndex()
        found = truth.loadRes(results)
        evaluator = COCOeval(truth, found, "bbox")
        evaluator.params.catIds = sorted({a["category_id"] for a in annotations})
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    precision = evaluator.eval["precision"]  # (IoU thresholds, recall points, classes, areas, max dets)
    per_class = {}
    for k, cat in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[names[cat - 1]] = round(float(values.mean()), 6) if values.size else 0.0
    return {**out, "map": round(float(max(stats[0], 0.0)), 6), "map_50": round(float(max(stats[1], 0.0)), 6),
            "map_75": round(float(max(stats[2], 0.0)), 6), "per_class_ap": per_class}
