"""Evaluation metrics: plain, JSON-able dicts computed with scikit-learn.

Every function returns Python floats/ints (never numpy scalars), so the result can go
straight into metrics.json and the report.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np
from sklearn import metrics as skm

from danlu.errors import DanluError

MAIN_METRIC = {"classification": "accuracy", "regression": "rmse"}

# Metrics where smaller is better; everything else (accuracy, f1, r2, roc_auc...) is "greater".
_LOWER_IS_BETTER = {"mae", "mse", "rmse", "loss", "log_loss", "perplexity"}
_SPLIT_PREFIXES = ("eval_", "test_", "validation_", "train_")


def greater_is_better(metric_name: str) -> bool:
    """True when a larger value is better. Accepts split prefixes: `eval_loss` -> loss."""
    name = metric_name.lower()
    for prefix in _SPLIT_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name not in _LOWER_IS_BETTER


def _float(value: Any) -> float | None:
    """A plain float, or None where the metric is undefined (NaN is not valid JSON)."""
    value = float(value)
    return None if math.isnan(value) else value


def _as_ids(values: Sequence[int] | np.ndarray, n_labels: int, what: str) -> np.ndarray:
    arr = np.asarray(values).reshape(-1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.number) or np.any(np.mod(arr, 1) != 0):
            raise DanluError(f"{what} must be integer class ids, got {arr.dtype} values")
    arr = arr.astype(np.int64, copy=False)
    bad = arr[(arr < 0) | (arr >= n_labels)]
    if bad.size:
        raise DanluError(f"{what} has class id {int(bad[0])}, outside 0..{n_labels - 1} ({n_labels} labels)")
    return arr


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    labels: list[str],
    probs: np.ndarray | None = None,
    rare: int | None = None,
    costs: np.ndarray | None = None,
) -> dict:
    """Accuracy, macro/weighted precision-recall-F1, per-class scores, confusion matrix.

    `y_true`/`y_pred` are class ids indexing `labels`. Macro and weighted averages are taken
    over the classes that occur in y_true or y_pred (scikit-learn's default), so a class
    the split simply does not contain does not drag the macro average to zero; per_class and
    the confusion matrix still list every label, in `labels` order.
    `probs`: (n, k) class probabilities, or (n,) positive-class probabilities when binary.
    `rare`: two classes: the id of the rare one, whose precision-recall AUC (`pr_auc`, from `probs`),
    precision, recall and F1 are reported as `*_rare`. `costs`: (k, k) cost of predicting column j for
    true row i; `cost` is the mean over the examples.
    """
    labels = [str(label) for label in labels]
    k = len(labels)
    if k == 0:
        raise DanluError("classification metrics need at least one label")
    y_true = _as_ids(y_true, k, "y_true")
    y_pred = _as_ids(y_pred, k, "y_pred")
    if y_true.shape != y_pred.shape:
        raise DanluError(f"y_true has {y_true.size} items but y_pred has {y_pred.size}")
    if y_true.size == 0:
        raise DanluError("no examples to evaluate: the split is empty")

    all_ids = list(range(k))
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    out: dict[str, Any] = {"accuracy": float(skm.accuracy_score(y_true, y_pred))}
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=present, average=average, zero_division=0
        )
        out[f"precision_{average}"] = float(p)
        out[f"recall_{average}"] = float(r)
        out[f"f1_{average}"] = float(f)

    if probs is not None:
        out.update(_roc_auc(y_true, np.asarray(probs, dtype=np.float64), k))
    if rare is not None and k == 2:
        out.update(_rare_class(y_true, y_pred, None if probs is None else np.asarray(probs, dtype=np.float64), rare))
    if costs is not None:
        out["cost"] = float(np.asarray(costs, dtype=np.float64)[y_true, y_pred].mean())

    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=all_ids, average=None, zero_division=0
    )
    out["per_class"] = {
        label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, label in enumerate(labels)
    }
    matrix = skm.confusion_matrix(y_true, y_pred, labels=all_ids)  # rows = true, cols = predicted
    out["confusion_matrix"] = {"labels": labels, "matrix": matrix.astype(int).tolist()}
    out["n"] = int(y_true.size)
    return out


def _rare_class(y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray | None, rare: int) -> dict:
    truth, said = y_true == rare, y_pred == rare
    p, r, f, _ = skm.precision_recall_fscore_support(truth, said, average="binary", zero_division=0)
    out = {"precision_rare": float(p), "recall_rare": float(r), "f1_rare": float(f)}
    if probs is not None and truth.any() and not truth.all():
        score = probs[:, rare] if probs.ndim == 2 else (probs if rare == 1 else 1 - probs)
        out["pr_auc"] = float(skm.average_precision_score(truth, score))
    return out


def _roc_auc(y_true: np.ndarray, probs: np.ndarray, k: int) -> dict:
    """roc_auc (binary) or roc_auc_ovr (multiclass); {} where it is undefined."""
    if probs.shape[0] != y_true.size:
        raise DanluError(f"probs has {probs.shape[0]} rows but there are {y_true.size} examples")
    if not np.isfinite(probs).all():  # scikit-learn would end in a ValueError traceback
        bad = int((~np.isfinite(probs.reshape(len(probs), -1))).any(axis=1).sum())
        raise DanluError(f"the model's outputs are not finite (NaN or inf) for {bad:,} of {y_true.size:,} examples: "
                         "training diverged; lower train.lr (or set train.max_grad_norm, train.warmup)")
    present = set(y_true.tolist())
    if k == 2:
        if probs.ndim == 2:
            if probs.shape[1] != 2:
                raise DanluError(f"binary probs must have shape (n, 2) or (n,), got {probs.shape}")
            probs = probs[:, 1]
        if len(present) < 2:  # AUC needs both classes among the true labels
            return {}
        return {"roc_auc": float(skm.roc_auc_score(y_true, probs))}
    if probs.ndim != 2 or probs.shape[1] != k:
        raise DanluError(f"probs must have shape (n, {k}) for {k} classes, got {probs.shape}")
    if len(present) < k:  # one-vs-rest AUC is undefined for a class with no positives
        return {}
    probs = probs / probs.sum(axis=1, keepdims=True)  # sklearn insists rows sum to 1
    return {"roc_auc_ovr": float(skm.roc_auc_score(y_true, probs, multi_class="ovr", labels=list(range(k))))}


def regression_metrics(y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray) -> dict:
    """mae, rmse, r2 (None when undefined: fewer than two examples) and n."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise DanluError(f"y_true has {y_true.size} items but y_pred has {y_pred.size}")
    if y_true.size == 0:
        raise DanluError("no examples to evaluate: the split is empty")
    r2 = _float(skm.r2_score(y_true, y_pred)) if y_true.size >= 2 else None
    return {
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "rmse": float(skm.root_mean_squared_error(y_true, y_pred)),
        "r2": r2,
        "n": int(y_true.size),
    }


def scalar_metrics(metrics: dict) -> dict:
    """Only the numeric entries (no per_class, confusion_matrix, None or booleans)."""
    return {
        key: value
        for key, value in metrics.items()
        if isinstance(value, numbers.Real) and not isinstance(value, bool)
    }


def summarize_folds(fold_metrics: list[dict]) -> dict:
    """{metric: {"mean", "std", "folds"}} for each scalar metric present in every fold."""
    scalars = [scalar_metrics(m) for m in fold_metrics]
    if not scalars:
        return {}
    names = [name for name in scalars[0] if all(name in s for s in scalars[1:])]
    summary = {}
    for name in names:
        values = np.array([s[name] for s in scalars], dtype=np.float64)
        summary[name] = {
            "mean": float(values.mean()),
            # Population std (ddof=0): the folds are all the folds there are, not a sample.
            "std": float(values.std(ddof=0)),
            "folds": [float(v) for v in values],
        }
    return summary
