"""`danlu estimate` against the real run: peak memory and time per epoch of three shipped recipes, and a
fourth (sst2_transformer) that the estimate's model was not worked out on.

Each recipe trains with `danlu train --estimate` on a small budget (the overrides below), so the
estimate (made by the same process, just before training) and the measurement (that training) see
the same model, data, batch and machine. Prints one row per recipe: estimated and measured peak
memory and seconds per epoch, and the error of each (estimate / measured - 1).

    flock /tmp/danlu-cpu.lock .venv/bin/python benchmarks/scale_estimate.py [--only mnist_mlp ...]

Each training runs with OMP_NUM_THREADS=1 (on the shared 2-core machine torch's own threads contend).

On a CPU the measured peak is the process's peak resident memory during training (VmHWM, reset
first) less what it held before, plus the model's weights (danlu/train/memory.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {
    # the MLP on MNIST's 8,000 training images, one epoch
    "mnist_mlp": ["train.epochs=1"],
    # MiniLM fine-tuning on 2,000 SST-2 sentences, one epoch, evaluated once on 300
    "sst2_minilm": ["data.limit={train: 2000, validation: 300, test: 100}", "train.eval_every=epoch",
                    "train.checkpoint_every=epoch", "evaluate.baseline=false"],
    # the character GPT on Shakespeare, 300 steps, evaluated every 100
    "shakespeare_char": ["train.max_steps=300", "train.eval_every=100", "train.checkpoint_every=300",
                         "generate.samples=0", "evaluate.baseline=false"],
    # the check: a 2-layer BERT from scratch on 8,000 SST-2 phrases, one epoch, evaluated once on 872
    "sst2_transformer": ["data.limit={train: 8000}", "train.epochs=1", "train.eval_every=epoch",
                         "train.checkpoint_every=epoch", "evaluate.baseline=false"],
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--only", nargs="*", default=list(CASES))
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            out = Path(tmp) / name
            cmd = [str(REPO / ".venv/bin/danlu"), "train", str(REPO / "recipes" / f"{name}.yaml"), *CASES[name],
                   "train.progress=false", "--estimate", "-o", str(out)]
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            if done.returncode:
                print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{name}: training failed")
            found = json.loads((out / "resources.json").read_text())
            est = found["estimate"]
            measured_epoch = found["seconds"] / found["epochs"]
            rows.append((name, est, found["peak_memory_bytes"], measured_epoch))
            print(name, json.dumps({"estimate": est, "measured_peak": found["peak_memory_bytes"],
                                    "measured_seconds": found["seconds"], "epochs": found["epochs"]}), flush=True)
    print("| recipe | parameters | estimated peak (step + evaluation + checkpoint) | measured peak | error "
          "| estimated s/epoch | measured s/epoch | error |")
    print("|---|---|---|---|---|---|---|---|")
    for name, est, mm, mt in rows:
        em, et = est["memory"], est["epoch_seconds"]
        parts = "{:.1f} + {:.1f} + {:.1f}".format(est["step_memory"] / 2**20, est["evaluation"] / 2**20,
                                                  est["checkpoint"] / 2**20)
        print(f"| {name} | {est['parameters']:,} | {em / 2**20:.1f} MB ({parts}) | {mm / 2**20:.1f} MB "
              f"| {em / mm - 1:+.0%} | {et:.2f} | {mt:.2f} | {et / mt - 1:+.0%} |")


if __name__ == "__main__":
    main()
