"""`danlu train --nproc 2` against one process: the same recipe and global batch, on this CPU (gloo).

For each seed, trains the recipe once on one process and once on two (train.batch_size is the
global batch, so each of the two takes half), and prints the validation metric and the wall time
of each. On a 2-core machine no speed-up is expected: the figure is the overhead of the second
process (its own imports and data, gradient all-reduce over gloo every step).

    .venv/bin/python benchmarks/scale_distributed.py [--recipe recipes/sst2_transformer.yaml] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# 8,000 SST-2 phrases, one epoch, evaluated once on the 872 dev sentences
OVERRIDES = ["data.limit={train: 8000, test: 200}", "train.epochs=1", "train.eval_every=epoch",
             "train.checkpoint_every=epoch", "evaluate.baseline=false", "train.progress=false"]


def train(recipe: str, nproc: int, seed: int, out: Path, metric: str) -> tuple[float, float]:
    cmd = [str(REPO / ".venv/bin/danlu"), "train", recipe, *OVERRIDES, f"train.seed={seed}", "-o", str(out)]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"nproc {nproc}: training failed")
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics["validation"][metric], seconds


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--recipe", default=str(REPO / "recipes" / "sst2_transformer.yaml"))
    p.add_argument("--metric", default="accuracy")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    args = p.parse_args()
    found = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for nproc in (1, 2):
                value, seconds = train(args.recipe, nproc, seed, Path(tmp) / f"n{nproc}-s{seed}", args.metric)
                found[nproc].append((value, seconds))
                print(f"seed {seed}, {nproc} process(es): validation {args.metric} {value:.4f}, {seconds:.1f} s "
                      "(the whole command)", flush=True)
    for nproc, rows in found.items():
        values = [v for v, _ in rows]
        print(f"{nproc} process(es): validation {args.metric} mean {statistics.mean(values):.4f} "
              f"(seeds {', '.join(f'{v:.4f}' for v in values)}), wall {statistics.mean(s for _, s in rows):.1f} s")


if __name__ == "__main__":
    main()
