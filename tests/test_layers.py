"""The package's shape: the layers and no import cycles (import-linter's contracts in pyproject.toml),
no task named outside its own folder, and a CLI that answers --help without loading torch."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASK_NAMES = re.compile(r'"(text|image|tabular)-(classification|regression)"|"causal-lm"')


def test_the_import_contracts_hold():
    result = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                             "lint_imports_command()"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_no_task_is_named_outside_its_folder():
    found = [f"{path.relative_to(REPO)}:{n}" for path in sorted((REPO / "danlu").rglob("*.py"))
             if "tasks" not in path.relative_to(REPO / "danlu").parts
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if TASK_NAMES.search(line)]
    assert not found, found


def test_help_and_recipe_validation_load_no_torch():
    code = ("import sys; from danlu.cli import app; from danlu.recipe import recipe_from_dict; "
            "recipe_from_dict({'name': 'x', 'task': 'text-classification', 'data': {'source': 'builtin:iris'}}); "
            "print(sorted(m for m in ('torch', 'transformers', 'pandas', 'sklearn') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
