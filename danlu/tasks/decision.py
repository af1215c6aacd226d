"""The decision rule of a two-class classifier: predict the rare class when its probability reaches a
threshold chosen on the validation split (for the rare class's F1, for a recall target, or for the
least cost), instead of the default 0.5. Pure functions of scores and truth.
"""

from __future__ import annotations

import numpy as np

from danlu.errors import DataError


def candidates(scores: np.ndarray) -> np.ndarray:
    """Every threshold that changes a decision: the distinct scores (predict rare when score >= t)."""
    return np.unique(scores)[::-1]


def choose(scores: np.ndarray, truth: np.ndarray, how: str, recall: float | None = None,
           costs: tuple[float, float] | None = None) -> float:
    """The threshold on `scores` (the rare class's probability) for `how` ("f1" | "recall" | "cost").

    `truth`: True where the example is the rare class. `costs`: (a false positive, a false negative).
    """
    if not truth.any():
        raise DataError("the validation split holds no example of the rare class: no threshold can be chosen on it")
    ts = candidates(scores)
    said = scores[None, :] >= ts[:, None]  # (thresholds, examples)
    tp = (said & truth).sum(1)
    fp = (said & ~truth).sum(1)
    fn = truth.sum() - tp
    if how == "f1":
        f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        return float(ts[int(np.argmax(f1))])  # the highest threshold among the best
    if how == "recall":
        reached = np.flatnonzero(tp / truth.sum() >= recall)
        return float(ts[reached[0]])  # the highest threshold that reaches the recall: most precision
    false_positive, false_negative = costs
    total = fp * false_positive + fn * false_negative
    return float(ts[int(np.argmin(total))])
