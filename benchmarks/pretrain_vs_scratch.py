"""Does self-supervised pretraining help? A recipe with a `pretrain:` section against itself without
it: same model, same fine-tuning budget, one script.

Arms, each over the fine-tuning seeds given (`train.seed`):
  scratch     the recipe with `pretrain=`: random weights (text: tokenizer trained on the labelled rows);
  init        text recipes, `--init`: random weights with the pretrained model's tokenizer and shape,
              so that the two arms differ in the weights alone;
  pretrained  the recipe as shipped: pretraining (labels ignored), then fine-tuning. The first seed
              pretrains in its run; later seeds fine-tune from that run's RUN/pretrain/model.
              `--pretrained DIR` skips pretraining and fine-tunes from DIR (a model pretrained
              elsewhere, e.g. on a GPU, with the recipe's pretrain section).
Prints every run, then the mean validation accuracy of each arm and the gain.

    .venv/bin/python benchmarks/pretrain_vs_scratch.py [--recipe recipes/sst2_mlm.yaml] [--seeds 0 1 2] [--init]
        [--pretrained DIR] [--out DIR] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from danlu.pipeline import train  # noqa: E402
from danlu.recipe import load_recipe  # noqa: E402
from danlu.train import silence_transformers  # noqa: E402


def run_arm(recipe_path: Path, arm: str, seed: int, overrides: list[str], out: Path) -> dict:
    recipe = load_recipe(recipe_path, [*overrides, f"train.seed={seed}"])
    start = time.perf_counter()
    run = train(recipe, out / f"{arm}-s{seed}")
    metrics = json.loads(run.metrics_path.read_text())
    pre = run.root / "pretrain" / "metrics.json"
    result = {"arm": arm, "seed": seed, "validation": metrics["validation"]["accuracy"],
              "test": metrics["test"]["accuracy"], "seconds": round(time.perf_counter() - start, 1),
              "pretrain": json.loads(pre.read_text()) if pre.exists() else None, "run": str(run.root)}
    print(json.dumps(result), flush=True)
    return result


def random_init(pretrained: Path, dest: Path, seed: int = 0) -> Path:
    """A checkpoint with the pretrained model's config and tokenizer and freshly initialised weights."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertForMaskedLM

    if not (dest / "config.json").exists():
        torch.manual_seed(seed)
        BertForMaskedLM(AutoConfig.from_pretrained(pretrained)).save_pretrained(dest)
        AutoTokenizer.from_pretrained(pretrained).save_pretrained(dest)
    return dest


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "sst2_mlm.yaml"),
                   help="any recipe with a pretrain section, e.g. recipes/cifar10_vit_mim.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--pretrained", help="fine-tune the pretrained arm from this model instead of pretraining")
    p.add_argument("--init", action="store_true", help="add the same-tokenizer random-weights arm (text recipes)")
    p.add_argument("--arms", nargs="+", default=["scratch", "init", "pretrained"], choices=["scratch", "init", "pretrained"])
    p.add_argument("--out", default="/tmp/danlu-pretrain-sst2")
    p.add_argument("overrides", nargs="*", help="recipe overrides for every arm, e.g. train.epochs=1")
    args = p.parse_args()
    silence_transformers()
    out = Path(args.out)
    recipe_path = Path(args.recipe)
    arms = [a for a in args.arms if a != "init" or args.init]
    results: list[dict] = []
    pretrained = Path(args.pretrained).resolve() if args.pretrained else None
    if "pretrained" in arms:
        for seed in args.seeds:
            if pretrained is None:  # the recipe as shipped: pretraining inside the run
                first = run_arm(recipe_path, "pretrained", seed, args.overrides, out)
                pretrained = Path(first["run"]) / "pretrain" / "model"
                results.append(first)
            else:
                results.append(run_arm(recipe_path, "pretrained", seed, [*args.overrides, f"model.from={pretrained}", "pretrain="], out))
    for seed in args.seeds:
        if "scratch" in arms:
            results.append(run_arm(recipe_path, "scratch", seed, [*args.overrides, "pretrain="], out))
        if "init" in arms and pretrained is not None:
            init = random_init(pretrained, out / f"random-init-s{seed}", seed)
            results.append(run_arm(recipe_path, "init", seed, [*args.overrides, f"model.from={init}", "pretrain="], out))
    means = {}
    for arm in dict.fromkeys(r["arm"] for r in results):
        vals = [r["validation"] for r in results if r["arm"] == arm]
        tests = [r["test"] for r in results if r["arm"] == arm]
        means[arm] = statistics.mean(vals)
        spread = f" ± {statistics.stdev(vals):.4f}" if len(vals) > 1 else ""
        print(f"{arm:8s} validation {means[arm]:.4f}{spread} (test {statistics.mean(tests):.4f}) over seeds "
              f"{[r['seed'] for r in results if r['arm'] == arm]}: {' '.join(f'{v:.4f}' for v in vals)}")
    for arm in ("scratch", "init"):
        if arm in means and "pretrained" in means:
            print(f"pretrained vs {arm}: {100 * (means['pretrained'] - means[arm]):+.1f} points of validation accuracy")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
