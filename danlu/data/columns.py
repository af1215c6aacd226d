"""Checks of a table's feature columns that no row-by-row rule sees: id-like columns, constant columns,
and a column that gives the label away.

    id_like     every training row has its own value (an integer or text column: a customer number, a
                row id). A model can memorise rows by it and learns nothing that carries over.
    constant    one value in every training row: it carries nothing (reported, not a failure).
    label_leak  one column alone predicts the label almost perfectly (a shallow tree on that column,
                cross-validated on the training split): usually the label in disguise (a "closed
                account" flag for churn, a diagnosis code for a diagnosis).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from danlu.data.report import Rule

MIN_ROWS = 20  # below this, "unique per row" and "predicts the label" say nothing
MAX_ROWS = 5_000  # rows of train sampled for the leakage check
MAX_COLUMNS = 200  # columns checked for leakage, in order


def column_rules(train: pd.DataFrame, features: list[str], categorical: list[str], classification: bool,
                 max_agreement: float) -> tuple[list[Rule], list[str]]:
    """(rules, notes) for the feature columns of the training split."""
    if len(train) < MIN_ROWS or not features:
        return [], []
    present = [c for c in features if c in train]
    notes = []
    constant = [c for c in present if train[c].nunique(dropna=True) <= 1]
    if constant:
        notes.append(f"{len(constant)} feature column(s) hold one value in every training row and carry nothing: "
                     f"{_names(constant)}")
    rules = [_id_like(train, present, categorical)]
    if "label" in train:
        rules.append(_label_leak(train, [c for c in present if c not in constant][:MAX_COLUMNS], categorical,
                                 classification, max_agreement))
    return rules, notes


def _names(columns: list[str], shown: int = 8) -> str:
    more = f" and {len(columns) - shown} more" if len(columns) > shown else ""
    return ", ".join(repr(c) for c in columns[:shown]) + more


def _id_like(train: pd.DataFrame, features: list[str], categorical: list[str]) -> Rule:
    found = []
    for column in features:
        values = train[column].dropna()
        whole = column in categorical or pd.api.types.is_integer_dtype(values) or (
            pd.api.types.is_float_dtype(values) and bool(np.all(np.mod(values, 1) == 0)))
        if whole and len(values) == len(train) and values.nunique() == len(train):
            found.append(column)
    message = (f"{len(found)} feature column(s) hold a different value in every training row, like an id: "
               f"{_names(found)}; leave them out with data.features" if found else "no id-like column")
    return Rule("id_like", not found, len(found), 0, len(found), [], message)


def _label_leak(train: pd.DataFrame, features: list[str], categorical: list[str], classification: bool,
                max_agreement: float) -> Rule:
    from sklearn.model_selection import cross_val_score
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    sample = train.sample(n=min(len(train), MAX_ROWS), random_state=0) if len(train) > MAX_ROWS else train
    y = sample["label"]
    if classification:
        y = y.astype(str)
        if y.value_counts().min() < 3:
            return Rule("label_leak", True, None, max_agreement, 0, [], "too few rows per class to check")
    else:
        y = pd.to_numeric(y, errors="coerce")
    scored = []
    for column in features:
        x = _encoded(sample[column], column in categorical)
        keep = np.isfinite(x) & (np.isfinite(y.to_numpy(dtype=float)) if not classification else True)
        if keep.sum() < MIN_ROWS:
            continue
        model = (DecisionTreeClassifier if classification else DecisionTreeRegressor)(max_depth=4, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = float(np.mean(cross_val_score(model, x[keep, None], y.to_numpy()[keep], cv=3)))
        scored.append((score, column))
    leaks = sorted(((s, c) for s, c in scored if s >= max_agreement), reverse=True)
    what = "accuracy" if classification else "R²"
    best = max(scored) if scored else (None, None)
    message = (f"{len(leaks)} column(s) alone predict the label (cross-validated {what} >= {max_agreement:g}): "
               + ", ".join(f"{c!r} ({s:.3f})" for s, c in leaks[:8]) + "; likely the label in disguise: leave them "
               "out with data.features" if leaks else
               f"no single column predicts the label (best: {best[1]!r}, {what} {best[0]:.3f})" if scored
               else "no column to check")
    return Rule("label_leak", not leaks, best[0], max_agreement, len(leaks), [], message)


def _encoded(values: pd.Series, categorical: bool) -> np.ndarray:
    if categorical or not pd.api.types.is_numeric_dtype(values):
        codes, _ = pd.factorize(values.astype(str).where(values.notna(), None))
        return np.where(codes < 0, np.nan, codes).astype(float)
    return values.to_numpy(dtype=float)
