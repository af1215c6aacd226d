"""Whether the global feature importances of a table model are a property of the data or of one training:
the breast-cancer recipe trained with two seeds, Integrated Gradients importances (mean |attribution| of
the predicted class's logit, danlu.trust.explain.global_importance) over the same test rows, then the
top-k features of each, their overlap and the Spearman correlation of the full rankings.

    .venv/bin/python benchmarks/explain_stability.py [--seeds 0 1] [--top 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from danlu.pipeline.stages import check_data, train  # noqa: E402
from danlu.recipe import load_recipe  # noqa: E402
from danlu.tasks import load_task  # noqa: E402
from danlu.trust.explain import global_importance  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    ranked = {}
    for seed in args.seeds:
        recipe = load_recipe(ROOT / "recipes/breast_cancer.yaml",
                             overrides=["evaluate.cross_validation=null", f"train.seed={seed}"])
        with tempfile.TemporaryDirectory() as tmp:
            run = train(recipe, Path(tmp) / "run")
            task, model = load_task(run.model_dir)
            splits, _, _ = check_data(recipe)
            ranked[seed] = global_importance(task, model, splits.frames["test"], limit=1000)
        print(f"seed {seed}: test rows {len(splits.frames['test'])}; top {args.top}: "
              + ", ".join(f"{r['feature']} {r['importance']:.3f}" for r in ranked[seed][: args.top]), flush=True)
    a, b = (ranked[s] for s in args.seeds[:2])
    tops = [{r["feature"] for r in x[: args.top]} for x in (a, b)]
    order = [r["feature"] for r in a]
    rank_b = {r["feature"]: i for i, r in enumerate(b)}
    rho = spearmanr(range(len(order)), [rank_b[f] for f in order]).statistic
    print(f"top-{args.top} overlap {len(tops[0] & tops[1])}/{args.top}; same first feature: "
          f"{a[0]['feature'] == b[0]['feature']}; Spearman of the full rankings {rho:.3f}")


if __name__ == "__main__":
    main()
