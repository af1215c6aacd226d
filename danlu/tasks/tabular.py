"""Tabular classification and regression: a table of features -> a class or a number.

Features are preprocessed with scikit-learn (impute, standardise numbers, one-hot categories),
fitted on the training split only; the fitted preprocessor is saved beside the model.
"""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from danlu.models import ClassicConfig, ClassicModel
from danlu.tasks.base import Examples, Task

PREPROCESSOR_FILE = "preprocessor.joblib"


class TabularTask(Task):
    name = "tabular-classification"
    roles = ("label",)
    input_roles = ()
    large_model = False

    def __init__(self, recipe=None):
        super().__init__(recipe)
        self.features: list[str] = []
        self.preprocessor: ColumnTransformer | None = None
        self.target_mean, self.target_std = 0.0, 1.0

    def setup(self, train: pd.DataFrame, features: list[str], categorical: list[str]) -> None:
        self.fit_labels(train["label"])
        self.features = list(features)
        categorical = [c for c in categorical if c in self.features]
        numeric = [c for c in self.features if c not in categorical]
        self.preprocessor = ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), numeric),
            ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                  OneHotEncoder(handle_unknown="ignore", sparse_output=False)), categorical),
        ])
        frame = train[self.features].copy()
        frame[categorical] = frame[categorical].astype(str)
        self.preprocessor.fit(frame)
        if self.kind == "regression":
            y = train["label"].astype(np.float64)
            self.target_mean, self.target_std = float(y.mean()), float(y.std() or 1.0)

    def build_model(self) -> ClassicModel:
        cfg = self.recipe.model
        width = len(self.preprocessor.get_feature_names_out())
        config = ClassicConfig(
            arch="mlp", input_shape=[width], hidden=cfg.hidden if cfg.hidden is not None else [64],
            activation=cfg.activation or "relu", dropout=cfg.dropout or 0.0,
            num_labels=max(len(self.labels), 1), id2label=self.id2label,
            label2id={v: k for k, v in self.id2label.items()},
            problem_type="regression" if self.kind == "regression" else "single_label_classification",
            target_mean=self.target_mean, target_std=self.target_std,
        )
        return ClassicModel(config)

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            from danlu.errors import DataError

            raise DataError(f"missing feature columns: {', '.join(missing)}")
        data = frame[self.features].copy()
        cat = list(self.preprocessor.transformers_[1][2])
        data[cat] = data[cat].astype(str)
        return self.preprocessor.transform(data).astype(np.float32)

    def encode(self, frame: pd.DataFrame) -> Examples:
        x = self._matrix(frame)
        y = self.label_ids(frame["label"]) if "label" in frame.columns else None
        return Examples([{"inputs": x[i], **({"labels": y[i]} if y is not None else {})} for i in range(len(x))])

    def collate(self, batch: list[dict]) -> dict:
        out = {"inputs": torch.as_tensor(np.stack([b["inputs"] for b in batch]))}
        if "labels" in batch[0]:
            out["labels"] = torch.as_tensor(np.asarray([b["labels"] for b in batch]))
        return out

    def save(self, model, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
        joblib.dump(self.preprocessor, out_dir / PREPROCESSOR_FILE)
        self.save_meta(out_dir, features=self.features)

    @classmethod
    def load(cls, model_dir: Path):
        meta = cls.read_meta(model_dir)
        task = cls()
        task.labels, task.features = meta["labels"], meta["features"]
        task.preprocessor = joblib.load(Path(model_dir) / PREPROCESSOR_FILE)
        return task, ClassicModel.from_pretrained(model_dir)


class TabularRegression(TabularTask):
    name = "tabular-regression"
    kind = "regression"
