"""danlu's training engine vs a plain transformers.Trainer at its defaults, in one process.

Same SST-2 sample, same trained tokenizer, same BERT with the same initial weights, one epoch each,
for each seed. Prints tokens/s (non-padding tokens of the training set / wall time of the train
call) of both, the ratio, and the validation loss each reached, so that speed is never bought with
quality. One seed's loss is noisy (about +-0.02 here), hence several seeds and their mean.

    .venv/bin/python benchmarks/train_throughput.py [--size tiny] [--train-size 16000] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from danlu.data import load_splits  # noqa: E402
from danlu.recipe import recipe_from_dict  # noqa: E402
from danlu.inference import TorchForward, outputs  # noqa: E402
from danlu.tasks import make_task  # noqa: E402
from danlu.train import silence_transformers  # noqa: E402
from danlu.train.engine import fit  # noqa: E402
from danlu.train.utilisation import matmul_peak, step_flops  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import cpu  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--train-size", type=int, default=16000)
    p.add_argument("--size", default="tiny", choices=["tiny", "small", "base"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--precision", default="auto")
    p.add_argument("--compile", default="auto")
    p.add_argument("--no-group", action="store_true", help="danlu with random batches (to split the gain)")
    p.add_argument("--data", default=os.environ.get("DANLU_DATA", str(DEFAULT_DATA)))
    return p.parse_args()


def eval_loss(model, task, dataset) -> float:
    logits, labels = outputs(task, TorchForward(model.float()), dataset, batch_size=128)
    return float(torch.nn.functional.cross_entropy(torch.as_tensor(logits), torch.as_tensor(labels)))


def run_danlu(task, recipe, train_ds, tmp: Path, group: bool):
    res = fit(task.build_model(), train_ds, None, task.collate, recipe.train, tmp / "danlu", tmp / "h.json",
              compute_metrics=None, metric=None, greater_is_better=True, large_model=True,
              group_by_length=group, resume=False)
    return res.model, f"danlu ({res.precision}, compile={res.compiled}, {'length-bucketed' if group else 'random'})"


def run_trainer(task, recipe, train_ds, tmp: Path):
    args = TrainingArguments(output_dir=str(tmp / "plain"), num_train_epochs=1,
                             per_device_train_batch_size=recipe.train.batch_size, learning_rate=recipe.train.lr,
                             seed=recipe.train.seed, use_cpu=not torch.cuda.is_available(), report_to="none",
                             save_strategy="no", disable_tqdm=True, logging_strategy="no")
    trainer = Trainer(model=task.build_model(), args=args, train_dataset=train_ds,
                      data_collator=DataCollatorWithPadding(task.tokenizer))
    trainer.train()
    return trainer.model, "transformers.Trainer defaults (fp32, eager, random)"


def flops_per_token(task, train_ds) -> float:
    """Training FLOPs (forward + backward) per real token, counted by torch on a batch of one length (no padding)."""
    from collections import Counter

    length = Counter(len(item["input_ids"]) for item in train_ds.items).most_common(1)[0][0]
    items = [item for item in train_ds.items if len(item["input_ids"]) == length][:32]
    return step_flops(task.build_model(), task.collate(items)) / (len(items) * length)


def main() -> None:
    args = parse()
    silence_transformers()
    compile_setting = {"true": True, "false": False}.get(args.compile, args.compile)
    base = {
        "name": "bench", "task": "text-classification",
        "data": {"train": f"{args.data}/sst2/train.tsv", "validation": f"{args.data}/sst2/dev.tsv",
                 "columns": {"text": ["sentence", "content"]}, "limit": {"train": args.train_size}},
        "model": {"arch": "bert", "size": args.size, "max_length": 64},
        "train": {"epochs": 1, "batch_size": args.batch_size, "lr": args.lr, "optimizer": "adamw",
                  "schedule": "linear", "precision": args.precision, "compile": compile_setting,
                  "progress": False, "checkpoint_every": 10**9},
    }
    recipe = recipe_from_dict(base)
    task = make_task(recipe)
    splits = load_splits(recipe.data, list(task.spec.roles), None, seed=0)
    task.setup(splits.frames["train"])
    train_ds, dev_ds = task.encode(splits.frames["train"]), task.encode(splits.frames["validation"])
    tokens = int(sum(len(item["input_ids"]) for item in train_ds.items))
    print(f"SST-2 sample: {len(train_ds):,} examples, {tokens:,} tokens per epoch; BERT {args.size}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; seeds {args.seeds}")

    per_token = flops_per_token(task, train_ds)
    print(f"CPU: {cpu()}; training FLOPs per token {per_token / 1e6:.2f} M (torch's FlopCounterMode)")
    results: dict[str, list[tuple[float, float]]] = {}
    for seed in args.seeds:
        seeded = recipe_from_dict({**base, "train": {**base["train"], "seed": seed}})
        for engine in ("danlu", "trainer"):
            with tempfile.TemporaryDirectory() as tmp:
                torch.manual_seed(seed)  # the same initial weights for both engines
                start = time.perf_counter()
                if engine == "danlu":
                    model, name = run_danlu(task, seeded, train_ds, Path(tmp), not args.no_group)
                else:
                    model, name = run_trainer(task, seeded, train_ds, Path(tmp))
                seconds = time.perf_counter() - start
            loss = eval_loss(model, task, dev_ds)
            results.setdefault(name, []).append((tokens / seconds, loss))
            print(f"  seed {seed}: {name}: {tokens / seconds:,.0f} tokens/s, dev loss {loss:.4f}")

    print(f"\n{'engine':58s} {'tokens/s':>9s} {'dev loss':>9s} {'GFLOP/s':>8s} {'MFU':>6s}")
    means = {}
    for name, runs in results.items():
        speed, loss = statistics.mean(r[0] for r in runs), statistics.mean(r[1] for r in runs)
        means[name] = (speed, loss)
        peak = matmul_peak("bf16" if "(bf16" in name else "fp32")["flops_per_s"]
        achieved = speed * per_token
        print(f"{name:58s} {speed:9,.0f} {loss:9.4f} {achieved / 1e9:8.2f} {achieved / peak:6.1%}")
    (d_speed, d_loss), (t_speed, t_loss) = means.values()
    print(f"speed-up (danlu / Trainer tokens/s): {d_speed / t_speed:.2f}x; "
          f"mean dev loss danlu {d_loss:.4f} vs Trainer {t_loss:.4f} ({d_loss - t_loss:+.4f})")


if __name__ == "__main__":
    main()
