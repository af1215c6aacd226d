"""`danlu tune` on a shipped recipe: does the search beat the shipped settings on validation?

Trains the shipped quickstart settings once (recipes/quickstart_tune.yaml without its tune: section
is the quickstart), then runs `danlu tune` with 20 trials on the same recipe, and prints the shipped
run's validation accuracy beside the best trial's, the pruned trials and the wall time. Test is
measured for the best trial only (tune_report.md).

    .venv/bin/python benchmarks/scale_tune.py [--trials 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "quickstart_tune.yaml"


def run(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=20)
    args = p.parse_args()
    danlu = str(REPO / ".venv/bin/danlu")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shipped_s = run([danlu, "train", str(RECIPE), "-o", str(tmp / "shipped")])
        shipped = json.loads((tmp / "shipped" / "metrics.json").read_text())["validation"]["accuracy"]
        tune_s = run([danlu, "tune", str(RECIPE), "--trials", str(args.trials), "--runs-root", str(tmp / "runs")])
        folder = tmp / "runs" / "tune-quickstart-tune"
        study = optuna.load_study(study_name="quickstart-tune", storage=f"sqlite:///{folder / 'study.db'}")
        states = [t.state.name for t in study.trials]
        print(f"shipped settings: validation accuracy {shipped:.4f} ({shipped_s:.1f} s)")
        print(f"tune, {len(states)} trials ({states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned) "
              f"in {tune_s:.1f} s: best trial {study.best_trial.number}, validation accuracy {study.best_value:.4f}, "
              f"params {study.best_params}")
        report = (folder / "tune_report.md").read_text()
        print(next(line for line in report.splitlines() if line.startswith("**Best")))
        print(report[report.index("## Parameter importances"):report.index("## Optimisation history")].strip())


if __name__ == "__main__":
    main()
