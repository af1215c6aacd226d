"""The simplest honest baselines a model must beat, measured with the same metrics as the model.

    majority    always the most frequent training class (probabilities: the training shares)
    linear      logistic regression on simple features (the task chooses them: TF-IDF for text,
                the preprocessed table, downsampled pixels)
    mean        always the training mean (regression)
    ridge       linear regression with an L2 penalty on the same simple features
    boosted_trees  gradient-boosted trees (scikit-learn's HistGradientBoosting) on a table's features:
                the model a tabular network has to beat before it is the one to ship
    unigram     every token drawn from its training frequency (language models: loss and perplexity)

Every baseline is fitted on the training split only. Large training sets are sampled to
MAX_FIT_ROWS rows (seeded) for the linear models: a baseline states an order of magnitude, and must
not cost more than the run.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from danlu.evaluate.metrics import classification_metrics, regression_metrics, scalar_metrics

MAX_FIT_ROWS = 50_000


def _sample(n: int, seed: int = 0) -> np.ndarray:
    if n <= MAX_FIT_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, MAX_FIT_ROWS, replace=False))


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in scalar_metrics(metrics).items() if k != "n"}


def majority(train_ids: np.ndarray, ids: np.ndarray, labels: list[str], rare: int | None = None) -> dict:
    shares = np.bincount(train_ids, minlength=len(labels)).astype(np.float64)
    shares /= shares.sum()
    probs = np.tile(shares, (len(ids), 1))
    return _scalars(classification_metrics(ids, probs.argmax(1), labels, probs=probs, rare=rare))


def fit_linear_classifier(x_train, train_ids: np.ndarray, seed: int = 0):
    from sklearn.linear_model import LogisticRegression

    keep = _sample(len(train_ids), seed)
    model = LogisticRegression(max_iter=300)
    with warnings.catch_warnings():  # an unconverged baseline is still a baseline; its figure says how good
        warnings.simplefilter("ignore")
        model.fit(x_train[keep], train_ids[keep])
    return model


def classifier_metrics(model, x, ids: np.ndarray, labels: list[str], rare: int | None = None) -> dict:
    """The metrics of a fitted scikit-learn classifier on (x, ids)."""
    probs = np.zeros((len(ids), len(labels)))
    probs[:, model.classes_] = model.predict_proba(x)  # a class absent from the sample gets probability 0
    return _scalars(classification_metrics(ids, probs.argmax(1), labels, probs=probs, rare=rare))


def fit_boosted_trees(x_train, train_y: np.ndarray, classification: bool, seed: int = 0):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    keep = _sample(len(train_y), seed)
    made = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
    return made(random_state=seed).fit(x_train[keep], train_y[keep])


def mean(train_y: np.ndarray, y: np.ndarray) -> dict:
    return _scalars(regression_metrics(y, np.full(len(y), float(np.mean(train_y)))))


def fit_ridge(x_train, train_y: np.ndarray, seed: int = 0):
    from sklearn.linear_model import Ridge

    keep = _sample(len(train_y), seed)
    return Ridge(alpha=1.0).fit(x_train[keep], train_y[keep])


def regressor_metrics(model, x, y: np.ndarray) -> dict:
    """The metrics of a fitted scikit-learn regressor on (x, y)."""
    return _scalars(regression_metrics(y, model.predict(x)))


def unigram(train_ids: np.ndarray, ids: np.ndarray, vocab_size: int) -> dict:
    """Mean loss per token when every token is drawn from its training frequency (add-one smoothed,
    so a token never seen in training costs log(vocab) + log(train tokens), not infinity)."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    scored = ids[1:] if len(ids) > 1 else ids  # the model predicts every token but the first, so does this
    loss = float(-logp[scored].mean()) if len(scored) else float("nan")
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}
