"""The baseline stage: the task's simplest honest baselines beside the model, and a warning when the
model does no better than the best of them on its main metric.

A tiny model that predicts one class (validation 0.475 against a majority rate of 0.525) must not pass
without a word: the verdict goes to the console, the report and metrics.json.
"""

from __future__ import annotations


def measure_baselines(task, frames: dict, splits: list[str]) -> dict:
    return task.baseline(frames, [s for s in splits if s != "train"])


# Scores no model can improve on: a split where model and baseline both reach one tells nothing.
PERFECT = {"accuracy": 1.0, "roc_auc": 1.0, "roc_auc_ovr": 1.0, "f1_macro": 1.0, "f1_weighted": 1.0,
           "precision_macro": 1.0, "recall_macro": 1.0, "r2": 1.0, "rmse": 0.0, "mae": 0.0}


def compare(metrics: dict, baselines: dict, main: str, spec, names: dict) -> list[str]:
    """A warning when the model is not better than the best baseline on its main metric, judged on
    validation, else test (a split where both are perfect is skipped)."""
    for split in ("validation", "test"):
        model = (metrics.get(split) or {}).get(main)
        others = {name: m.get(main) for name, m in (baselines.get(split) or {}).items() if m.get(main) is not None}
        if model is None or not others:
            continue
        higher = spec.higher_is_better(main)
        best = max(others, key=others.get) if higher else min(others, key=others.get)
        if main in PERFECT and model == others[best] == PERFECT[main]:
            continue
        beaten = model > others[best] if higher else model < others[best]
        if beaten:
            return []
        what = names.get(best, best)
        return [f"the model does no better than the {best} baseline ({what}) on {split}: {main} {model:.4f} "
                f"against {others[best]:.4f}; train longer, change the model, or check the data"]
    return []
