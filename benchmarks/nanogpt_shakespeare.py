"""danlu's engine vs a plain PyTorch loop, nanoGPT style, on the character-level Shakespeare recipe.

Every mode trains the same model (recipes/shakespeare_char.yaml: GPT-2 with 4 layers, 4 heads,
embedding 128, context 64; the same initial weights) on the same 90/10 character split, for the same
number of iterations, with the same optimisation: AdamW (beta2 0.99, weight decay 0.1 on matrices),
100 warmup iterations then cosine decay from 1e-3 to 1e-4, gradient clipping at 1.0, batches of 12
random 64-character windows.

- plain: nanoGPT's train.py reduced to its loop (get_batch, get_lr, clip, step), fp32, eager;
- danlu-fp32: danlu's engine (engine.fit, as `danlu train` calls it) forced to fp32;
- danlu: the engine with the recipe's `precision: auto` (bf16 autocast where the CPU has native bf16);
- danlu-compile: the same with `compile: true` (torch.compile; its compile time is counted).

No evaluation runs inside the timed training. Afterwards each model's validation loss is measured the
same way, in fp32, on the fixed blocks danlu reports. Wall and CPU seconds are printed: on a shared
machine CPU seconds move less with the neighbours' load (use --threads 1 there: two threads spinning
against other processes cost far more than they gain).

    .venv/bin/python benchmarks/nanogpt_shakespeare.py [--steps 2000] [--modes plain,danlu] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from danlu.inference import TorchForward  # noqa: E402
from danlu.pipeline import check_data  # noqa: E402
from danlu.recipe import load_recipe  # noqa: E402
from danlu.tasks import make_task  # noqa: E402
from danlu.train import silence_transformers  # noqa: E402
from danlu.train.engine import choose_precision, fit  # noqa: E402

MODES = ("plain", "danlu-fp32", "danlu", "danlu-compile")


def plain_loop(model, ids, cfg, steps: int, block: int, seed: int) -> None:
    """nanoGPT's training loop for this configuration, fp32 and eager."""
    torch.manual_seed(seed)
    data = torch.from_numpy(ids)
    decay = [p for p in model.parameters() if p.dim() >= 2]  # nanoGPT: matrices and embeddings decay
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, cfg.beta2))
    warmup = int(cfg.warmup)

    def get_lr(it: int) -> float:
        if it < warmup:
            return cfg.lr * (it + 1) / (warmup + 1)
        ratio = (it - warmup) / max(1, steps - warmup)
        return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)

    model.train()
    for it in range(steps):
        for group in opt.param_groups:
            group["lr"] = get_lr(it)
        ix = torch.randint(len(data) - block, (cfg.batch_size,))
        x = torch.stack([data[i:i + block] for i in ix.tolist()])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)


def danlu_engine(model, task, train_ds, cfg, steps: int, precision: str, compile_: bool):
    cfg = cfg.model_copy(update={"max_steps": steps, "precision": precision, "compile": compile_,
                                 "progress": False, "checkpoint_every": steps, "log_every": max(1, steps // 10)})
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(model, train_ds, None, task.collate, cfg, Path(tmp) / "checkpoints", Path(tmp) / "history.json",
                     compute_metrics=None, metric=None, greater_is_better=False, large_model=task.large_model)
    return result.model, result.precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes {unknown}; choose from {MODES}")
    if args.threads:
        torch.set_num_threads(args.threads)
    silence_transformers()

    recipe = load_recipe(REPO / "recipes" / "shakespeare_char.yaml", ["train.progress=false"])
    splits, _, _ = check_data(recipe)
    task = make_task(recipe)
    task.setup(splits.frames["train"])
    data = {name: task.encode(frame, train=name == "train") for name, frame in splits.frames.items() if len(frame)}
    torch.manual_seed(args.seed)
    initial = task.build_model().state_dict()

    def build(precision: str):
        """The model danlu builds for this precision (its attention differs: see CausalLM), with the
        shared initial weights. The plain loop gets the fp32 one: fused SDPA attention, as nanoGPT."""
        train_cfg = recipe.train.model_copy(update={"precision": precision})
        other = make_task(recipe.model_copy(update={"train": train_cfg}))
        other.tokenizer = task.tokenizer
        model = other.build_model()
        model.load_state_dict(initial)
        return model
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; auto precision here: "
          f"{choose_precision('auto', True)}; {args.steps} iterations of {recipe.train.batch_size} x {task.block}")

    rows = []
    for mode in modes:
        precision = "fp32" if mode in ("plain", "danlu-fp32") else recipe.train.precision
        model = build(precision)
        attention = model.config._attn_implementation
        wall, cpu = time.perf_counter(), time.process_time()
        if mode == "plain":
            plain_loop(model, data["train"].ids, recipe.train, args.steps, task.block, args.seed)
        else:
            model, precision = danlu_engine(model, task, data["train"], recipe.train, args.steps, precision,
                                            mode == "danlu-compile")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        loss = task.evaluate(TorchForward(model), data["validation"])["loss"]
        rows.append((mode, f"{precision}, {attention} attention", wall, cpu, loss))
        print(f"{mode:>14}: {wall:7.1f} s wall, {cpu:7.1f} s CPU, {args.steps / wall:5.2f} it/s, "
              f"validation loss {loss:.6f}", flush=True)

    base = next((r for r in rows if r[0] == "plain"), None)
    print("\n| mode | precision, attention | wall s | CPU s | speed-up (wall) | speed-up (CPU) | validation loss |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for mode, precision, wall, cpu, loss in rows:
        ratio = f"{base[2] / wall:.2f}x" if base else "-"
        cpu_ratio = f"{base[3] / cpu:.2f}x" if base else "-"
        print(f"| {mode} | {precision} | {wall:.1f} | {cpu:.1f} | {ratio} | {cpu_ratio} | {loss:.4f} |")


if __name__ == "__main__":
    main()
