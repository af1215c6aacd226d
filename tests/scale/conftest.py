from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from danlu.cli import app

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


def clean_failure(args, *fragments) -> str:
    """The command ends with exit 1 and one message holding every fragment, no traceback."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output
    return result.output
