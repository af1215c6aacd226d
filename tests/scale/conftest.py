from pathlib import Path

import pytest
import yaml

IRIS = {
    "name": "iris", "task": "tabular-classification",
    "data": {"source": "builtin:iris", "split": {"validation": 0.2, "test": 0.2, "seed": 0}},
    "quality": {"max_leakage": 0.05},  # iris holds a few repeated flowers
    "model": {"hidden": [16]},
    "train": {"epochs": 6, "batch_size": 16, "optimizer": "adam", "lr": 0.01, "progress": False},
    "evaluate": {"baseline": False},
}


def write_recipe(folder: Path, body: dict, name: str = "r.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.fixture
def iris():
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in IRIS.items()}
