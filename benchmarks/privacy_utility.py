"""The utility cost of differential privacy: a shipped recipe's test metric against the epsilon spent.

For each epsilon the recipe is trained with `privacy: {epsilon: E}` (DP-SGD through Opacus, delta auto =
1/n^1.1, max_grad_norm 1.0) and the hyperparameters DP-SGD needs (larger Poisson batches, more epochs);
"inf" is the same recipe and the same hyperparameters without privacy. Cross-validation and the
baselines are switched off (each would train again) and class weights too (DP-SGD clips a plain mean
loss). Prints a markdown table: epsilon budget, epsilon spent, delta, noise multiplier, steps, the main
metric on the test split, seconds.

    .venv/bin/python benchmarks/privacy_utility.py german      # recipes/german_credit.yaml
    .venv/bin/python benchmarks/privacy_utility.py mnist       # recipes/mnist_mlp.yaml
    .venv/bin/python benchmarks/privacy_utility.py mnist --epsilons 8 inf
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from danlu.pipeline.stages import train  # noqa: E402
from danlu.recipe import load_recipe  # noqa: E402

COMMON = ["evaluate.cross_validation=null", "evaluate.baseline=false", "train.progress=false"]
CASES = {
    "german": ("recipes/german_credit.yaml", "roc_auc",
               ["train.imbalance=none", "train.batch_size=64", "train.epochs=40", "train.lr=0.005",
                "model.dropout=0"]),
    "mnist": ("recipes/mnist_mlp.yaml", "accuracy",
              ["train.batch_size=256", "train.epochs=15", "train.lr=0.002"]),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--epsilons", nargs="+", default=["1", "3", "8", "inf"])
    args = parser.parse_args()
    recipe_path, metric, overrides = CASES[args.case]
    torch.set_num_threads(2)
    rows = []
    for eps in args.epsilons:
        extra = [] if eps == "inf" else [f"privacy.epsilon={eps}"]
        recipe = load_recipe(ROOT / recipe_path, overrides=COMMON + overrides + extra)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            run = train(recipe, Path(tmp) / "run")
            seconds = time.perf_counter() - start
            metrics = json.loads(run.metrics_path.read_text())
        spent = metrics.get("privacy", {})
        rows.append([eps, f"{spent['epsilon']:.2f}" if spent else "-", f"{spent['delta']:.2g}" if spent else "-",
                     f"{spent['noise_multiplier']:.3f}" if spent else "0", str(spent.get("steps", "-")),
                     f"{metrics['test'][metric]:.4f}", f"{seconds:.0f}"])
        print(" | ".join(rows[-1]), flush=True)
    print(f"\n{recipe_path} with {' '.join(overrides)}\n")
    print(f"| epsilon budget | epsilon spent | delta | noise multiplier | steps | test {metric} | seconds |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
