"""Does MLM pretraining on SST-2's own sentences help? Same model, same fine-tuning budget, one script.

Runs recipes/sst2_mlm.yaml as shipped (MLM pretraining on the training sentences, labels ignored,
then fine-tuning) and the same recipe with `pretrain=` (random initial weights): the tokenizer,
model shape, data and fine-tuning steps are identical. Prints both validation accuracies and the gain.

    .venv/bin/python benchmarks/pretrain_sst2.py [--pretrain-epochs 10 40] [--out /tmp/mlm] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from danlu.pipeline import train  # noqa: E402
from danlu.recipe import load_recipe  # noqa: E402
from danlu.train.engine import silence_transformers  # noqa: E402


def arm(name: str, overrides: list[str], out: Path) -> dict:
    recipe = load_recipe(ROOT / "recipes" / "sst2_mlm.yaml", overrides)
    start = time.perf_counter()
    run = train(recipe, out / name)
    metrics = json.loads(run.metrics_path.read_text())
    pre = run.root / "pretrain" / "metrics.json"
    result = {"arm": name, "validation": metrics["validation"]["accuracy"], "test": metrics["test"]["accuracy"],
              "seconds": round(time.perf_counter() - start, 1),
              "pretrain": json.loads(pre.read_text()) if pre.exists() else None}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pretrain-epochs", type=float, nargs="*", default=None,
                   help="pretraining budgets to compare (default: the recipe's)")
    p.add_argument("--out", default="/tmp/danlu-pretrain-sst2")
    p.add_argument("overrides", nargs="*", help="recipe overrides for both arms, e.g. train.epochs=1")
    args = p.parse_args()
    silence_transformers()
    out = Path(args.out)
    results = [arm("scratch", [*args.overrides, "pretrain="], out)]
    for epochs in args.pretrain_epochs or [None]:
        extra = [] if epochs is None else [f"pretrain.epochs={epochs:g}"]
        results.append(arm(f"mlm-{epochs:g}ep" if epochs else "mlm", [*args.overrides, *extra], out))
    base = results[0]["validation"]
    for r in results[1:]:
        print(f"{r['arm']}: validation {r['validation']:.4f} vs scratch {base:.4f}: "
              f"{100 * (r['validation'] - base):+.1f} points")
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
