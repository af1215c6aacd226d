import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_datasets() -> Path:
    return Path(os.environ.get("DANLU_DATA", REPO.parent / "shared" / "datasets"))


@pytest.fixture
def datasets_dir() -> Path:
    root = shared_datasets()
    if not root.is_dir():
        pytest.skip(f"real datasets not found at {root} (set DANLU_DATA to the shared datasets folder)")
    return root


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True, scope="session")
def _silence():
    from danlu.train import silence_transformers

    silence_transformers()
