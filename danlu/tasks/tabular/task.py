"""Tabular classification and regression: a row of features -> a class or a number.

Features are preprocessed (danlu.tasks.tabular.preprocess: impute, standardise numbers, one-hot
categories), fitted on the training split only and saved beside the model as JSON. The network is
danlu's classic MLP; the exported ONNX graph carries the preprocessing in front of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import numpy as np
import pandas as pd
import torch
from pydantic import ConfigDict, Field, create_model

from danlu.errors import DanluError, DataError
from danlu.models import ClassicConfig, ClassicModel
from danlu.run import atomic_write_json, read_json
from danlu.tasks.base import Task, read_meta
from danlu.tasks.classifier import Classifier
from danlu.tasks.regressor import Regressor
from danlu.tasks.tabular.preprocess import Preprocessing
from danlu.train.examples import Examples

PREPROCESSING_FILE = "preprocessing.json"
MAX_TEXT_CHARS = 10_000  # one categorical value of a request

# JSON values keep their type (1 stays int, "1" stays str); the preprocessing reads them as text.
Category = Optional[Union[int, float, str, bool]]


class TabularTask(Task):
    engine = "loop"

    def __init__(self, spec, recipe=None):
        super().__init__(spec, recipe)
        self.preprocessing: Preprocessing | None = None
        self.target_mean, self.target_std = 0.0, 1.0

    @property
    def features(self) -> list[str]:
        return self.preprocessing.features if self.preprocessing else []

    def setup(self, train: pd.DataFrame, features=(), categorical=()) -> None:
        self.fit_labels(train["label"])
        categorical = [c for c in categorical if c in features]
        numeric = [c for c in features if c not in categorical]
        self.preprocessing = Preprocessing.fit(train, numeric, categorical)
        if self.kind == "regression":
            y = self.label_ids(train["label"]).astype(np.float64)
            self.target_mean, self.target_std = float(y.mean()), float(y.std() or 1.0)

    def build_model(self) -> ClassicModel:
        cfg = self.recipe.model
        config = ClassicConfig(
            arch="mlp", input_shape=[self.preprocessing.width], hidden=cfg.hidden if cfg.hidden is not None else [64],
            activation=cfg.activation or "relu", dropout=cfg.dropout or 0.0,
            num_labels=max(len(self.labels), 1), id2label=self.id2label,
            label2id={v: k for k, v in self.id2label.items()},
            problem_type="regression" if self.kind == "regression" else "single_label_classification",
            target_mean=self.target_mean, target_std=self.target_std,
        )
        return ClassicModel(config)

    @property
    def id2label(self) -> dict[int, str]:  # regression: none; a classifier's own comes first
        return {}

    def encode(self, frame: pd.DataFrame, train: bool = False) -> Examples:
        x = self.preprocessing.transform(frame)
        y = self.label_ids(frame["label"]) if "label" in frame.columns else None
        return Examples([{"inputs": x[i], **({"labels": y[i]} if y is not None else {})} for i in range(len(x))])

    def collate(self, items: list[dict]) -> dict:
        out = {"inputs": torch.as_tensor(np.stack([b["inputs"] for b in items]))}
        if "labels" in items[0]:
            out["labels"] = torch.as_tensor(np.asarray([b["labels"] for b in items]))
        return out

    def attribution_units(self, batch: dict) -> list[list[tuple[str, list[int]]]]:
        pre, units, at = self.preprocessing, [], 0
        for column in pre.numeric:
            units.append((column, [at]))
            at += 1
        for column, cats in zip(pre.categorical, pre.categories):
            units.append((column, list(range(at, at + len(cats)))))
            at += len(cats)
        return [units] * len(batch["inputs"])

    def preprocessed(self, train: pd.DataFrame, frames: dict[str, pd.DataFrame]):
        """The linear baselines read what the network reads: the preprocessed features."""
        return self.preprocessing.transform(train), {s: self.preprocessing.transform(f) for s, f in frames.items()}

    # -- inputs from outside -------------------------------------------------------------
    def frame_from_value(self, value: str) -> pd.DataFrame:
        try:
            record = json.loads(value)
        except ValueError:
            record = None
        if not isinstance(record, (dict, list)) or (isinstance(record, list)
                                                    and not all(isinstance(r, dict) for r in record)):
            raise DanluError("tabular input is a file of rows or a JSON object such as "
                             '\'{"age": 41, "job": "A173"}\'')
        return pd.DataFrame(record if isinstance(record, list) else [record])

    def request_item(self):
        # Feature names are arbitrary strings (spaces, brackets): field names are f0.., aliases are the names.
        pre = self.preprocessing
        number = Optional[float]  # finite: the schema refuses NaN and Infinity
        fields = {f"f{i}": (number if name in pre.numeric else Category,
                            Field(alias=name, **({} if name in pre.numeric else {"union_mode": "left_to_right"})))
                  for i, name in enumerate(pre.features)}
        return create_model("Row", __config__=ConfigDict(extra="ignore", allow_inf_nan=False,
                                                          str_max_length=MAX_TEXT_CHARS), **fields)

    def rows_from_request(self, inputs: list) -> list[dict]:
        return [value.model_dump(by_alias=True) for value in inputs]

    def card(self) -> dict:
        return {**super().card(), "input": "tabular", "features": self.features}

    def input_facts(self) -> dict:
        pre = self.preprocessing
        return {"features": f"{len(pre.numeric)} numeric, {len(pre.categorical)} categorical",
                "encoded width": pre.width}

    # -- export: the preprocessing goes into the graph -------------------------------------
    def export_graph(self, proto):
        from onnx import compose

        opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        network_input = proto.graph.input[0].name
        pre = self.preprocessing.onnx_graph("pre_output", opset, proto.ir_version)
        return compose.merge_models(pre, proto, io_map=[("pre_output", network_input)])

    def export_feeds(self, frame: pd.DataFrame) -> dict:
        return self.preprocessing.onnx_feeds(frame)

    # -- saving --------------------------------------------------------------------------
    def save(self, model, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
        atomic_write_json(Path(out_dir) / PREPROCESSING_FILE, self.preprocessing.to_json())
        self.save_meta(out_dir, **self.label_meta(), features=self.features)

    def load(self, model_dir: Path):
        meta = read_meta(model_dir)
        self.load_labels(meta)
        path = Path(model_dir) / PREPROCESSING_FILE
        if not path.exists():
            raise DataError(f"{model_dir}: no {PREPROCESSING_FILE} (a run from an older danlu stored its "
                            "preprocessing as a pickle, which danlu no longer loads; train it again)")
        try:
            self.preprocessing = Preprocessing.from_json(read_json(path))
        except ValueError:
            raise DataError(f"{path}: is not valid JSON") from None
        model = ClassicModel.from_pretrained(model_dir)
        self.target_mean, self.target_std = model.config.target_mean, model.config.target_std
        return model


class TabularClassification(Classifier, TabularTask):
    def baseline_features(self, train, frames):
        return self.preprocessed(train, frames)

    def baseline(self, frames, splits) -> dict:
        from danlu.evaluate import baselines

        found = super().baseline(frames, splits)
        train_x, xs = self.preprocessed(frames["train"], {s: frames[s] for s in found})
        trees = baselines.fit_boosted_trees(train_x, self.label_ids(frames["train"]["label"]), True,
                                            self.recipe.train.seed)
        for split in found:
            found[split]["boosted_trees"] = baselines.classifier_metrics(
                trees, xs[split], self.label_ids(frames[split]["label"]), [str(v) for v in self.labels],
                self._rare_id())
        return found

    def baseline_names(self) -> dict[str, str]:
        return {"majority": "always the most frequent training class",
                "linear": "logistic regression on the preprocessed features",
                "boosted_trees": "gradient-boosted trees (HistGradientBoosting) on the same features"}


class TabularRegression(Regressor, TabularTask):
    def baseline_features(self, train, frames):
        return self.preprocessed(train, frames)

    def baseline(self, frames, splits) -> dict:
        from danlu.evaluate import baselines

        found = super().baseline(frames, splits)
        train_x, xs = self.preprocessed(frames["train"], {s: frames[s] for s in found})
        trees = baselines.fit_boosted_trees(train_x, self.label_ids(frames["train"]["label"]), False,
                                            self.recipe.train.seed)
        for split in found:
            found[split]["boosted_trees"] = baselines.regressor_metrics(trees, xs[split],
                                                                        self.label_ids(frames[split]["label"]))
        return found

    def baseline_names(self) -> dict[str, str]:
        return {"mean": "always the training mean", "ridge": "ridge regression on the preprocessed features",
                "boosted_trees": "gradient-boosted trees (HistGradientBoosting) on the same features"}
