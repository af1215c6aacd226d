"""Tabular preprocessing: every statistic comes from the training split only (no leakage into test)."""

import numpy as np
import pandas as pd

from danlu.recipe import recipe_from_dict
from danlu.tasks import make_task


def task():
    recipe = recipe_from_dict({"name": "t", "task": "tabular-classification",
                               "data": {"source": "builtin:breast_cancer"}, "model": {"hidden": [4]}})
    return make_task(recipe)


def test_standardisation_and_imputation_use_train_statistics_only():
    train = pd.DataFrame({"x": [0.0, 2.0, 4.0, np.nan], "c": ["a", "b", "a", "b"], "label": ["p", "n", "p", "n"]})
    t = task()
    t.setup(train, ["x", "c"], ["c"])
    x = t.encode(train)
    # x: mean 2, population sd of [0, 2, 4, 2 (imputed)] = sqrt(2); categories one-hot.
    assert np.allclose([row["inputs"][0] for row in x.items], np.array([-2, 0, 2, 0]) / np.sqrt(2), atol=1e-6)
    # A shifted test split is transformed with the train statistics, not re-standardised on itself;
    # a missing value gets the train mean, an unseen category no column.
    test = pd.DataFrame({"x": [100.0, np.nan], "c": ["zzz", "a"], "label": ["p", "n"]})
    out = np.stack([row["inputs"] for row in t.encode(test).items])
    assert np.allclose(out[:, 0], [98 / np.sqrt(2), 0.0], atol=1e-5)
    assert np.allclose(out[0, 1:], 0.0) and np.allclose(out[1, 1:], [1.0, 0.0])
    # ...and encoding the test split leaves the fitted preprocessor unchanged.
    assert np.allclose(t.encode(train).items[0]["inputs"], x.items[0]["inputs"])
    assert [row["labels"] for row in x.items] == [1, 0, 1, 0]  # labels sorted: n=0, p=1
