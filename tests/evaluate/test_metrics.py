"""Metrics checked against values worked out by hand."""

import json
import math

import numpy as np
import pytest

from danlu.errors import DanluError
from danlu.evaluate.metrics import (
    MAIN_METRIC,
    classification_metrics,
    greater_is_better,
    regression_metrics,
    scalar_metrics,
    summarize_folds,
)

LABELS = ["a", "b", "c"]


def test_three_class_known_values():
    # true a a b b c c / predicted a b b b c a
    m = classification_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], LABELS)
    assert m["confusion_matrix"] == {"labels": LABELS, "matrix": [[1, 1, 0], [0, 2, 0], [1, 0, 1]]}
    assert m["accuracy"] == pytest.approx(4 / 6)
    # precision a=1/2 b=2/3 c=1; recall a=1/2 b=1 c=1/2; f1 a=1/2 b=4/5 c=2/3
    assert m["precision_macro"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["recall_macro"] == pytest.approx(2 / 3)
    assert m["f1_macro"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    # equal supports: weighted == macro
    assert m["f1_weighted"] == pytest.approx(m["f1_macro"])
    assert m["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert m["n"] == 6
    assert "roc_auc" not in m
    json.dumps(m, allow_nan=False)  # plain JSON, no numpy types
    assert all(type(v) in (float, int) for v in scalar_metrics(m).values())


def test_weighted_uses_support():
    # supports a=3 b=1; everything predicted a: precision a=3/4, recall a=1 -> f1 a=6/7, b all 0
    m = classification_metrics([0, 0, 0, 1], [0, 0, 0, 0], ["a", "b"])
    assert m["f1_macro"] == pytest.approx((6 / 7) / 2)
    assert m["f1_weighted"] == pytest.approx(3 / 4 * 6 / 7)


def test_class_missing_from_y_true_still_listed():
    m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], LABELS)
    assert list(m["per_class"]) == LABELS
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["confusion_matrix"]["matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    # macro over the classes that occur (a, b): p a=1 b=2/3, r a=1/2 b=1, f1 a=2/3 b=4/5
    assert m["precision_macro"] == pytest.approx(5 / 6)
    assert m["recall_macro"] == pytest.approx(3 / 4)
    assert m["f1_macro"] == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_binary_roc_auc_both_prob_shapes():
    y = [0, 0, 1, 1]
    pos = np.array([0.1, 0.4, 0.35, 0.8])  # 3 of 4 positive/negative pairs ranked right
    one = classification_metrics(y, [0, 0, 0, 1], ["neg", "pos"], probs=pos)
    two = classification_metrics(y, [0, 0, 0, 1], ["neg", "pos"], probs=np.stack([1 - pos, pos], axis=1))
    assert one["roc_auc"] == pytest.approx(0.75)
    assert two["roc_auc"] == pytest.approx(0.75)


def test_binary_roc_auc_omitted_with_one_true_class():
    m = classification_metrics([1, 1], [1, 0], ["neg", "pos"], probs=np.array([0.9, 0.2]))
    assert "roc_auc" not in m


def test_multiclass_roc_auc_ovr():
    probs = np.eye(3)[[0, 0, 1, 1, 2, 2]] * 0.8 + 0.2 / 3
    m = classification_metrics([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], LABELS, probs=probs)
    assert m["roc_auc_ovr"] == pytest.approx(1.0)
    missing = classification_metrics([0, 0, 1, 1], [0, 0, 1, 1], LABELS, probs=probs[:4])
    assert "roc_auc_ovr" not in missing


def test_non_finite_probabilities_say_training_diverged():
    probs = np.array([[0.2, 0.8], [np.nan, np.nan], [0.9, 0.1]])
    with pytest.raises(DanluError, match=r"not finite \(NaN or inf\) for 1 of 3 examples: training diverged"):
        classification_metrics([1, 0, 0], [1, 0, 0], ["a", "b"], probs=probs)


def test_bad_ids_and_lengths_raise():
    with pytest.raises(DanluError, match="outside"):
        classification_metrics([0, 3], [0, 1], LABELS)
    with pytest.raises(DanluError, match="items"):
        classification_metrics([0, 1], [0], LABELS)
    with pytest.raises(DanluError, match="empty"):
        classification_metrics([], [], LABELS)


def test_regression_known_values():
    m = regression_metrics([1, 2, 3, 4], [1, 2, 3, 5])
    # one error of 1: mae 1/4, rmse sqrt(1/4); ss_tot = 5 -> r2 = 1 - 1/5
    assert m == pytest.approx({"mae": 0.25, "rmse": 0.5, "r2": 0.8, "n": 4})
    assert regression_metrics([2.0], [3.0])["r2"] is None  # undefined, not NaN


def test_main_metric_and_direction():
    assert MAIN_METRIC == {"classification": "accuracy", "regression": "rmse"}
    for name in ("mae", "rmse", "loss", "perplexity", "eval_loss", "eval_rmse"):
        assert not greater_is_better(name)
    for name in ("accuracy", "f1_macro", "r2", "roc_auc", "eval_accuracy"):
        assert greater_is_better(name)


def test_scalar_metrics_drops_nested_and_none():
    m = {"accuracy": 0.5, "n": 3, "r2": None, "per_class": {}, "flag": True, "x": np.float64(1.5)}
    assert scalar_metrics(m) == {"accuracy": 0.5, "n": 3, "x": 1.5}


def test_summarize_folds_mean_and_population_std():
    folds = [
        {"accuracy": 0.8, "f1_macro": 0.7, "per_class": {}},
        {"accuracy": 0.9, "f1_macro": 0.7},
        {"accuracy": 1.0, "f1_macro": 0.7, "roc_auc": 0.9},  # roc_auc not in every fold
    ]
    s = summarize_folds(folds)
    assert set(s) == {"accuracy", "f1_macro"}
    assert s["accuracy"]["mean"] == pytest.approx(0.9)
    assert s["accuracy"]["std"] == pytest.approx(math.sqrt(0.02 / 3))  # ddof=0
    assert s["accuracy"]["folds"] == pytest.approx([0.8, 0.9, 1.0])
    assert s["f1_macro"]["std"] == pytest.approx(0.0)
    assert summarize_folds([]) == {}
