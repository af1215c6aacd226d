"""Semantic segmentation metrics from one confusion matrix over every pixel of a split.

IoU of class c = TP / (TP + FP + FN); mean IoU averages it over the classes that occur in the split's
labels or predictions (a class absent from both has no IoU and does not count), background included,
as PASCAL VOC and Cityscapes report it. Pixels labelled IGNORE (255, the VOC convention) count nowhere.
torchmetrics is not a dependency here; np.bincount computes the same matrix.
"""

from __future__ import annotations

import numpy as np

IGNORE = 255


def confusion(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) pixel counts: rows the true class, columns the predicted one."""
    labels, predicted = np.asarray(labels).reshape(-1), np.asarray(predicted).reshape(-1)
    keep = (labels != IGNORE) & (labels >= 0) & (labels < classes)
    flat = labels[keep].astype(np.int64) * classes + predicted[keep].astype(np.int64)
    return np.bincount(flat, minlength=classes * classes).reshape(classes, classes)


def segmentation_metrics(matrix: np.ndarray, names: list[str]) -> dict:
    """miou, pixel_accuracy and per_class_iou ({name: IoU or None}) of a confusion matrix."""
    matrix = np.asarray(matrix, dtype=np.float64)
    hits = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - hits
    present = union > 0
    iou = np.divide(hits, union, out=np.zeros_like(hits), where=present)
    total = matrix.sum()
    return {
        "miou": round(float(iou[present].mean()), 6) if present.any() else 0.0,
        "pixel_accuracy": round(float(hits.sum() / total), 6) if total else 0.0,
        "per_class_iou": {name: (round(float(v), 6) if p else None) for name, v, p in zip(names, iou, present)},
    }
