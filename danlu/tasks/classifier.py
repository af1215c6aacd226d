"""What every task whose label is one class of a fixed set shares: label ids, metrics, JSON, the
serve response, the confusion-matrix report sections and the majority / linear baselines."""

from __future__ import annotations

from abc import ABC, abstractmethod

from typing import Union

import numpy as np
import pandas as pd
from pydantic import BaseModel

from danlu.errors import DataError

LabelValue = Union[int, float, str, bool]


class ClassPrediction(BaseModel):
    label: LabelValue
    score: float
    scores: dict[str, float]


class Classifier(ABC):
    """Mixed into a Task (it reads self.spec, self.recipe); `baseline_features` gives the linear
    baseline its simple features.

    Two classes: `rare` is the less frequent training class, whose PR-AUC, precision, recall and F1 every
    split reports; `decision` ({"class", "threshold", "chosen_by"}) is the threshold on its probability
    that predict and serve apply, when the recipe asks for one (evaluate.threshold).
    """

    labels: list = []  # class values in id order
    rare = None
    decision: dict | None = None

    def fit_labels(self, values: pd.Series) -> None:
        uniq = pd.unique(values.dropna())
        self.labels = sorted((plain(v) for v in uniq), key=lambda v: (isinstance(v, str), v))
        if len(self.labels) == 2:
            counts = values.dropna().map(lambda v: str(plain(v))).value_counts()
            # The rare class; at equal counts the second label, as scikit-learn's positive class.
            self.rare = min(self.labels[::-1], key=lambda label: counts.get(str(label), 0))

    def _rare_id(self) -> int | None:
        return None if self.rare is None else [str(v) for v in self.labels].index(str(self.rare))

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Class ids: the most probable class, or with a decision threshold the rare class when its
        probability reaches it."""
        if self.decision is None:
            return probs.argmax(-1)
        rare = self._rare_id()
        return np.where(probs[:, rare] >= self.decision["threshold"], rare, 1 - rare)

    def costs(self) -> np.ndarray | None:
        """The recipe's evaluate.costs as a (k, k) matrix in label order (true rows, predicted columns)."""
        given = self.recipe.evaluate.costs if self.recipe is not None else None
        if not given:
            return None
        names = [str(v) for v in self.labels]
        unknown = sorted(({*given} | {p for row in given.values() for p in row}) - set(names))
        if unknown:
            raise DataError(f"evaluate.costs: {', '.join(unknown)} is not a class (classes: {', '.join(names)})")
        matrix = np.zeros((len(names), len(names)))
        for true, row in given.items():
            for predicted, cost in row.items():
                matrix[names.index(true), names.index(predicted)] = cost
        return matrix

    def tune_decision(self, forward, validation) -> dict | None:
        """Choose the decision threshold on the validation split when the recipe asks for one."""
        from danlu.inference import outputs
        from danlu.tasks import decision

        wanted = self.recipe.evaluate.threshold if self.recipe is not None else None
        if wanted is None:
            return None
        if len(self.labels) != 2:
            raise DataError(f"evaluate.threshold: a decision threshold needs two classes, not {len(self.labels)}")
        if validation is None or not len(validation):
            raise DataError("evaluate.threshold: the threshold is chosen on the validation split, and there is none")
        logits, ids = outputs(self, forward, validation)
        rare = self._rare_id()
        costs = None
        if wanted.choose == "cost":
            matrix = self.costs()
            costs = (matrix[1 - rare, rare], matrix[rare, 1 - rare])
        threshold = decision.choose(softmax(logits)[:, rare], ids == rare, wanted.choose, wanted.recall, costs)
        how = (f"recall >= {wanted.recall:g}" if wanted.choose == "recall" else
               "the rare class's best F1" if wanted.choose == "f1" else "the least cost")
        self.decision = {"class": self.rare, "threshold": threshold, "chosen_by": f"{how} on validation"}
        return self.decision

    def label_ids(self, values: pd.Series) -> np.ndarray:
        index = {str(v): i for i, v in enumerate(self.labels)}
        ids = [index.get(str(plain(v)), -1) for v in values]
        unknown = sorted({str(v) for v, i in zip(values, ids) if i < 0})
        if unknown:
            raise DataError(f"labels not seen in training: {', '.join(unknown[:10])}; known labels: "
                            f"{', '.join(map(str, self.labels))}")
        return np.asarray(ids, dtype=np.int64)

    @property
    def id2label(self) -> dict[int, str]:
        return {i: str(v) for i, v in enumerate(self.labels)}

    def head_labels(self) -> dict:
        """The label arguments of a classification head's config."""
        return dict(num_labels=len(self.labels), id2label=self.id2label,
                    label2id={v: k for k, v in self.id2label.items()})

    # -- measuring ---------------------------------------------------------------------
    def metrics(self, logits: np.ndarray, label_ids: np.ndarray) -> dict:
        from danlu.evaluate.metrics import classification_metrics

        probs = softmax(logits)
        return classification_metrics(label_ids, self.decide(probs), [str(v) for v in self.labels], probs=probs,
                                      rare=self._rare_id(), costs=self.costs())

    def evaluate(self, forward, dataset) -> dict:
        from danlu.inference import outputs

        logits, labels = outputs(self, forward, dataset)
        return self.metrics(logits, labels)

    def to_json(self, logits: np.ndarray) -> list[dict]:
        probs = softmax(logits)
        out = []
        for row, best in zip(probs, self.decide(probs)):
            best = int(best)
            out.append({"label": self.labels[best], "score": round(float(row[best]), 6),
                        "scores": {str(lab): round(float(p), 6) for lab, p in zip(self.labels, row)}})
        return out

    def response_item(self) -> type[BaseModel]:
        return ClassPrediction

    def card(self) -> dict:
        card = {**super().card(), "labels": list(self.labels)}
        return {**card, "decision": self.decision} if self.decision else card

    def label_meta(self) -> dict:
        """What save_meta records of the labels, and load_labels reads back."""
        return {"labels": self.labels, "rare": self.rare, "decision": self.decision}

    def load_labels(self, meta: dict) -> None:
        self.labels, self.rare, self.decision = meta["labels"], meta.get("rare"), meta.get("decision")

    # -- baselines ---------------------------------------------------------------------
    @abstractmethod
    def baseline_features(self, train: pd.DataFrame, frames: dict[str, pd.DataFrame]):
        """(features of train, {split: features}) for the linear baseline."""

    def baseline(self, frames: dict[str, pd.DataFrame], splits: list[str]) -> dict:
        from danlu.evaluate import baselines

        train = frames["train"]
        names = [str(v) for v in self.labels]
        train_ids = self.label_ids(train["label"])
        wanted = {s: frames[s] for s in splits if s in frames and len(frames[s]) and "label" in frames[s]}
        x_train, xs = self.baseline_features(train, wanted)
        linear = baselines.fit_linear_classifier(x_train, train_ids, seed=self.recipe.train.seed)
        out = {}
        for split, frame in wanted.items():
            ids = self.label_ids(frame["label"])
            out[split] = {"majority": baselines.majority(train_ids, ids, names, self._rare_id()),
                          "linear": baselines.classifier_metrics(linear, xs[split], ids, names, self._rare_id())}
        return out

    # -- report ------------------------------------------------------------------------
    def report_sections(self, metrics: dict) -> list:
        from danlu.report import confusion_plot, slug, table_cell

        sections = []
        for split, split_metrics in metrics.items():
            blocks = []
            cm = (split_metrics or {}).get("confusion_matrix")
            if cm and cm.get("labels"):
                name = f"confusion_{slug(split)}"
                blocks.append(("image", f"plots/{name}.png", confusion_plot(cm["labels"], cm["matrix"], split),
                               "confusion matrix"))
            per_class = (split_metrics or {}).get("per_class") or {}
            if per_class:
                rows = [[label, *(table_cell(c.get(key)) for key in ("precision", "recall", "f1", "support"))]
                        for label, c in per_class.items()]
                blocks.append(("table", ["class", "precision", "recall", "f1", "support"], rows))
            if blocks:
                sections.append((f"Classes: {split}", blocks))
        return sections


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def plain(value):
    """numpy scalars to Python ones, so labels survive JSON and compare across splits."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
