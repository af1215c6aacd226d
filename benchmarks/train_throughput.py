"""danlu's training engine vs a plain transformers.Trainer at its defaults, in one process.

Same SST-2 sample, same tokenizer, same BERT (same initial weights), one epoch each. Prints
tokens/s (non-padding tokens of the training set / wall time of the train call) for both, the
ratio, and the validation loss each reached, so that speed is never bought with quality.

    .venv/bin/python benchmarks/train_throughput.py [--train-size 4000] [--size small]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from danlu.data import load_splits  # noqa: E402
from danlu.recipe import recipe_from_dict  # noqa: E402
from danlu.tasks import make_task, predict_logits  # noqa: E402
from danlu.train.engine import fit, silence_transformers  # noqa: E402


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--train-size", type=int, default=4000)
    p.add_argument("--size", default="small", choices=["tiny", "small", "base"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--precision", default="auto")
    p.add_argument("--compile", default="auto")
    p.add_argument("--data", default=os.environ.get("DANLU_DATA", str(Path(__file__).resolve().parents[2]
                                                                       / "shared" / "datasets")))
    return p.parse_args()


def eval_loss(model, task, dataset) -> float:
    logits, labels = predict_logits(model, dataset, task.collate, batch_size=128)
    return float(torch.nn.functional.cross_entropy(torch.as_tensor(logits), torch.as_tensor(labels)))


def main() -> None:
    args = parse()
    silence_transformers()
    compile_setting = {"true": True, "false": False}.get(args.compile, args.compile)
    recipe = recipe_from_dict({
        "name": "bench", "task": "text-classification",
        "data": {"train": f"{args.data}/sst2/train.tsv", "validation": f"{args.data}/sst2/dev.tsv",
                 "columns": {"text": ["sentence", "content"]}, "limit": {"train": args.train_size}},
        "model": {"arch": "bert", "size": args.size, "max_length": 64},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "optimizer": "adamw",
                  "schedule": "linear", "precision": args.precision, "compile": compile_setting,
                  "progress": False, "checkpoint_every": 10**9, "seed": 0},
    })
    task = make_task(recipe)
    splits = load_splits(recipe.data, list(task.roles), None, seed=0)
    task.setup(splits.frames["train"])
    train_ds, dev_ds = task.encode(splits.frames["train"]), task.encode(splits.frames["validation"])
    tokens = task.tokens_in(train_ds) * args.epochs
    print(f"SST-2 sample: {len(train_ds):,} examples, {tokens:,.0f} tokens per run; BERT {args.size}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = task.build_model()
        start = time.perf_counter()
        res = fit(model, train_ds, None, task.collate, recipe.train, Path(tmp) / "danlu", Path(tmp) / "h.json",
                  compute_metrics=None, metric=None, greater_is_better=True, large_model=True,
                  group_by_length=True, resume=False)
        danlu_s = time.perf_counter() - start
        rows.append((f"danlu ({res.precision}, compile={res.compiled}, length-grouped)", danlu_s,
                     eval_loss(res.model.float(), task, dev_ds)))

        torch.manual_seed(0)
        model = task.build_model()
        targs = TrainingArguments(output_dir=str(Path(tmp) / "plain"), num_train_epochs=args.epochs,
                                  per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
                                  seed=0, use_cpu=not torch.cuda.is_available(), report_to="none",
                                  save_strategy="no", disable_tqdm=True)
        trainer = Trainer(model=model, args=targs, train_dataset=train_ds,
                          data_collator=DataCollatorWithPadding(task.tokenizer))
        start = time.perf_counter()
        trainer.train()
        plain_s = time.perf_counter() - start
        rows.append(("transformers.Trainer defaults (fp32, eager, random batches)", plain_s,
                     eval_loss(trainer.model, task, dev_ds)))

    print(f"{'engine':64s} {'seconds':>8s} {'tokens/s':>9s} {'dev loss':>9s}")
    for name, secs, loss in rows:
        print(f"{name:64s} {secs:8.1f} {tokens / secs:9.0f} {loss:9.4f}")
    print(f"speed-up (danlu / Trainer tokens/s): {rows[1][1] / rows[0][1]:.2f}x; "
          f"dev loss danlu {rows[0][2]:.4f} vs Trainer {rows[1][2]:.4f}")


if __name__ == "__main__":
    main()
