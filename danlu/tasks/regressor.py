"""What every task whose label is a number shares: metrics, JSON, the serve response and the
mean / ridge baselines."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import pandas as pd
from pydantic import BaseModel

from danlu.errors import DataError


class ValuePrediction(BaseModel):
    value: float


class Regressor(ABC):
    labels: list = []

    def fit_labels(self, values: pd.Series) -> None:
        self.labels = []

    def label_meta(self) -> dict:
        return {"labels": []}

    def load_labels(self, meta: dict) -> None:
        self.labels = []

    def tune_decision(self, forward, validation) -> None:
        return None  # a number has no decision threshold

    def label_ids(self, values: pd.Series) -> np.ndarray:
        numbers = pd.to_numeric(values, errors="coerce").astype(np.float64)
        bad = ~np.isfinite(numbers.to_numpy())
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataError(f"{int(bad.sum()):,} labels are not finite numbers (the first: {values.iloc[first]!r})")
        return numbers.to_numpy().astype(np.float32)

    def metrics(self, outputs: np.ndarray, label_ids: np.ndarray) -> dict:
        from danlu.evaluate.metrics import regression_metrics

        return regression_metrics(label_ids, outputs.reshape(len(outputs), -1)[:, 0])

    def evaluate(self, forward, dataset) -> dict:
        from danlu.inference import outputs

        values, labels = outputs(self, forward, dataset)
        return self.metrics(values, labels)

    def to_json(self, outputs: np.ndarray) -> list[dict]:
        return [{"value": float(v)} for v in outputs.reshape(len(outputs), -1)[:, 0]]

    def response_item(self) -> type[BaseModel]:
        return ValuePrediction

    @abstractmethod
    def baseline_features(self, train: pd.DataFrame, frames: dict[str, pd.DataFrame]):
        """(features of train, {split: features}) for the ridge baseline."""

    def baseline(self, frames: dict[str, pd.DataFrame], splits: list[str]) -> dict:
        from danlu.evaluate import baselines

        train = frames["train"]
        train_y = self.label_ids(train["label"])
        wanted = {s: frames[s] for s in splits if s in frames and len(frames[s]) and "label" in frames[s]}
        x_train, xs = self.baseline_features(train, wanted)
        ridge = baselines.fit_ridge(x_train, train_y, seed=self.recipe.train.seed)
        return {split: {"mean": baselines.mean(train_y, self.label_ids(frame["label"])),
                        "ridge": baselines.regressor_metrics(ridge, xs[split], self.label_ids(frame["label"]))}
                for split, frame in wanted.items()}
