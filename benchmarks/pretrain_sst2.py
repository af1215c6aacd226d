"""Does MLM pretraining on SST-2's own sentences help? Same model, same fine-tuning budget, one script.

Arm A fine-tunes a BERT (the shape of recipes/sst2_transformer.yaml) from random weights; arm B first
pretrains it with masked language modelling on the SST-2 training sentences (labels ignored), then
fine-tunes it with exactly the same data, steps and settings. Prints both validation accuracies.

    .venv/bin/python benchmarks/pretrain_sst2.py [--pretrain-epochs 10] [--finetune-epochs 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import BertForSequenceClassification

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from danlu.data import load_splits  # noqa: E402
from danlu.recipe import recipe_from_dict  # noqa: E402
from danlu.tasks import make_task, predict_logits  # noqa: E402
from danlu.train.engine import fit, silence_transformers  # noqa: E402
from danlu.train.pretrain import pretrain_mlm  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pretrain-epochs", type=float, default=3)
    p.add_argument("--finetune-epochs", type=float, default=1)
    p.add_argument("--train-size", type=int, default=None, help="labelled examples for fine-tuning")
    p.add_argument("--data", default=os.environ.get("DANLU_DATA", str(DEFAULT_DATA)))
    args = p.parse_args()
    silence_transformers()
    data = {"train": f"{args.data}/sst2/train.tsv", "validation": f"{args.data}/sst2/dev.tsv",
            "columns": {"text": ["sentence", "content"]}, "split": {"test": 0}}
    if args.train_size:
        data["limit"] = {"train": args.train_size}
    recipe = recipe_from_dict({
        "name": "mlm-bench", "task": "text-classification", "data": data,
        "model": {"arch": "bert", "layers": 2, "embedding": 128, "heads": 4, "feed_forward": 128,
                  "dropout": 0.1, "max_length": 128},
        "train": {"epochs": args.finetune_epochs, "batch_size": 32, "optimizer": "adam", "lr": 1e-3,
                  "schedule": "linear", "warmup": 0.05, "progress": False, "seed": 0,
                  "checkpoint_every": 10**9},
    })
    task = make_task(recipe)
    splits = load_splits(recipe.data, list(task.roles), None, seed=0)
    # The corpus for pretraining: every training sentence, labels ignored (the full train split even
    # when fine-tuning uses fewer labelled examples).
    corpus = load_splits(recipe.data.model_copy(update={"limit": None}), list(task.roles), None, seed=0)
    task.setup(corpus.frames["train"])  # the tokenizer learns from the whole corpus in both arms
    train_ds, dev_ds = task.encode(splits.frames["train"]), task.encode(splits.frames["validation"])
    print(f"fine-tune on {len(train_ds):,} labelled sentences; pretrain on {len(corpus.frames['train']):,}")

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        scratch = task.build_model()
        pre_cfg = recipe.train.model_copy(update={"epochs": args.pretrain_epochs, "lr": 5e-4, "warmup": 0.06,
                                                  "optimizer": "adamw", "weight_decay": 0.01})
        start = time.perf_counter()
        info = pretrain_mlm(scratch.config, task.tokenizer, corpus.frames["train"]["text"].astype(str).tolist(),
                            pre_cfg, tmp / "pretrain", mask_prob=0.15, block_size=128, seed=0)
        print(f"MLM pretraining: {info['blocks']:,} blocks, {info['steps']} steps, {time.perf_counter() - start:.0f} s,"
              f" held-out perplexity {info['perplexity']:.1f}")
        for arm in ("random init", "MLM-pretrained"):
            torch.manual_seed(0)
            if arm == "random init":
                model = task.build_model()
            else:
                model = BertForSequenceClassification.from_pretrained(
                    tmp / "pretrain" / "model", num_labels=2, id2label=task.id2label,
                    label2id={v: k for k, v in task.id2label.items()})
            res = fit(model, train_ds, None, task.collate, recipe.train, tmp / arm / "ckpt", tmp / arm / "h.json",
                      compute_metrics=None, metric=None, greater_is_better=True, large_model=True,
                      group_by_length=True, resume=False)
            logits, labels = predict_logits(res.model, dev_ds, task.collate)
            results[arm] = task.metrics(logits, labels)["accuracy"]
            print(f"{arm:15s}: validation accuracy {results[arm]:.4f} ({res.steps} steps, {res.seconds:.0f} s)")
    gain = results["MLM-pretrained"] - results["random init"]
    print(f"pretraining gain: {100 * gain:+.1f} points of validation accuracy")


if __name__ == "__main__":
    main()
