"""Evaluation: metrics for classification and regression, and k-fold summaries."""

from danlu.evaluate.metrics import (
    MAIN_METRIC,
    classification_metrics,
    greater_is_better,
    regression_metrics,
    scalar_metrics,
    summarize_folds,
)

__all__ = [
    "MAIN_METRIC",
    "classification_metrics",
    "greater_is_better",
    "regression_metrics",
    "scalar_metrics",
    "summarize_folds",
]
