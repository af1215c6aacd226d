"""The fitted preprocessing of a table, stored as data: impute, standardise numbers, one-hot categories.

It is fitted on the training split only and saved as JSON (means, scales, categories), never as a
pickle: loading a run must not run code from it. The same numbers give the numpy transform the
PyTorch path uses and an ONNX graph that `danlu export` puts in front of the network, so plain
onnxruntime reads the raw columns and agrees with the run.

    numeric      missing or non-finite -> the training mean; then (x - mean) / std (std 0 -> 1)
    categorical  missing -> the most frequent training value; one column per training value,
                 all zeros for a value never seen in training
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from danlu.data.values import MISSING_TEXT
from danlu.errors import DataError


@dataclass
class Preprocessing:
    numeric: list[str]
    means: list[float]
    scales: list[float]
    categorical: list[str]
    categories: list[list[str]]
    fills: list[str]

    @classmethod
    def fit(cls, frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> "Preprocessing":
        means, scales = [], []
        for column in numeric:
            values = _numbers(frame[column], column)
            finite = values[np.isfinite(values)]
            mean = float(finite.mean()) if finite.size else 0.0
            # The spread of the imputed column, as scikit-learn's imputer + scaler pipeline computes it.
            std = float(np.where(np.isfinite(values), values, mean).std()) if len(values) else 0.0
            means.append(mean)
            scales.append(std if std > 0 and math.isfinite(std) else 1.0)
        categories, fills = [], []
        for column in categorical:
            values = _texts(frame[column])
            present = values[values.notna()]
            counts = present.value_counts(sort=False)
            categories.append(sorted(counts.index.tolist()))
            # The most frequent value fills a gap; ties go to the first in sorted order, as scikit-learn does.
            fills.append(min(counts.index[counts == counts.max()]) if len(counts) else "")
        return cls(list(numeric), means, scales, list(categorical), categories, fills)

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(len(c) for c in self.categories)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise DataError(f"missing feature columns: {', '.join(missing)}")
        parts = []
        for column, mean, scale in zip(self.numeric, self.means, self.scales):
            values = _numbers(frame[column], column)
            values = np.where(np.isfinite(values), values, mean)
            parts.append(((values - mean) / scale)[:, None])
        for column, cats, fill in zip(self.categorical, self.categories, self.fills):
            values = _texts(frame[column]).fillna(fill).to_numpy()
            parts.append((values[:, None] == np.asarray(cats, dtype=object)[None, :]).astype(np.float64))
        if not parts:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data) -> "Preprocessing":
        """Read back with every field's type checked: the file comes from a run folder, not from us."""
        try:
            made = cls(**{k: data[k] for k in ("numeric", "means", "scales", "categorical", "categories", "fills")})
            ok = (all(isinstance(v, str) for v in made.numeric + made.categorical + made.fills)
                  and all(isinstance(v, (int, float)) for v in made.means + made.scales)
                  and all(isinstance(c, list) and all(isinstance(v, str) for v in c) for c in made.categories)
                  and len(made.means) == len(made.scales) == len(made.numeric)
                  and len(made.categories) == len(made.fills) == len(made.categorical))
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise DataError("the saved preprocessing (preprocessing.json) is not what danlu writes")
        return made

    def onnx_graph(self, output: str, opset: int, ir_version: int):
        """This preprocessing as an ONNX graph: one input per raw column ([N, 1], float for numbers,
        string for categories), `output` the [N, width] float matrix the network reads."""
        from onnx import TensorProto, helper, numpy_helper

        nodes, inits, inputs, parts = [], [], [], []
        if self.numeric:
            for column in self.numeric:
                inputs.append(helper.make_tensor_value_info(column, TensorProto.FLOAT, [None, 1]))
            inits += [numpy_helper.from_array(np.asarray([self.means], np.float32), "pre_means"),
                      numpy_helper.from_array(np.asarray([self.scales], np.float32), "pre_scales")]
            nodes += [
                helper.make_node("Concat", list(self.numeric), ["pre_num"], axis=1),
                helper.make_node("IsNaN", ["pre_num"], ["pre_nan"]),
                helper.make_node("IsInf", ["pre_num"], ["pre_inf"]),
                helper.make_node("Or", ["pre_nan", "pre_inf"], ["pre_gap"]),
                helper.make_node("Where", ["pre_gap", "pre_means", "pre_num"], ["pre_filled"]),
                helper.make_node("Sub", ["pre_filled", "pre_means"], ["pre_centred"]),
                helper.make_node("Div", ["pre_centred", "pre_scales"], ["pre_scaled"]),
            ]
            parts.append("pre_scaled")
        for i, (column, cats, fill) in enumerate(zip(self.categorical, self.categories, self.fills)):
            inputs.append(helper.make_tensor_value_info(column, TensorProto.STRING, [None, 1]))
            # Category -> its index; a gap -> the fill's index; anything unseen -> -1 (all zeros below).
            keys = list(cats) + [m for m in sorted(MISSING_TEXT) if m not in cats]
            values = list(range(len(cats))) + [cats.index(fill) if fill in cats else -1] * (len(keys) - len(cats))
            inits.append(numpy_helper.from_array(np.arange(len(cats), dtype=np.int64)[None, :], f"pre_range{i}"))
            nodes += [
                helper.make_node("LabelEncoder", [column], [f"pre_code{i}"], domain="ai.onnx.ml",
                                 keys_strings=keys, values_int64s=values, default_int64=-1),
                helper.make_node("Equal", [f"pre_code{i}", f"pre_range{i}"], [f"pre_hot{i}"]),
                helper.make_node("Cast", [f"pre_hot{i}"], [f"pre_cat{i}"], to=TensorProto.FLOAT),
            ]
            parts.append(f"pre_cat{i}")
        nodes.append(helper.make_node("Concat", parts, [output], axis=1))
        graph = helper.make_graph(nodes, "danlu_preprocessing", inputs,
                                  [helper.make_tensor_value_info(output, TensorProto.FLOAT, [None, self.width])],
                                  initializer=inits)
        return helper.make_model(graph, ir_version=ir_version,
                                 opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", 2)])

    def onnx_feeds(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The raw columns as plain onnxruntime takes them for the graph above."""
        feeds = {c: _numbers(frame[c], c).astype(np.float32)[:, None] for c in self.numeric}
        for column in self.categorical:
            feeds[column] = _texts(frame[column]).fillna("").to_numpy(dtype=object)[:, None]
        return feeds


def _numbers(values: pd.Series, column: str) -> np.ndarray:
    """A column as floats (missing -> NaN); a value that is there but is not a number is an error."""
    numbers = pd.to_numeric(values, errors="coerce")
    text = values.astype(str).str.strip().str.lower()
    bad = numbers.isna() & values.notna() & ~text.isin(list(MISSING_TEXT))
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"feature '{column}': {values.iloc[first]!r} (row {first + 1} of {len(values):,}) "
                        "is not a number")
    return numbers.astype(np.float64).to_numpy()


def _texts(values: pd.Series) -> pd.Series:
    """Category values as strings, with missing ones (NaN, None, '', 'nan') as NaN."""
    text = values.map(lambda v: v if isinstance(v, str) else (None if v is None or
                                                           (isinstance(v, float) and math.isnan(v)) else str(_plain(v))))
    return text.where(~text.fillna("").str.strip().str.lower().isin(list(MISSING_TEXT)), None)


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    return int(value) if isinstance(value, float) and value.is_integer() else value
