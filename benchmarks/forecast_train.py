"""The forecasting model's training through danlu against the same model trained by a plain PyTorch loop.

Same ETTh1 training windows (danlu's data stage: the first 8,640 rows, every series scaled by its
training mean and std), the same network with the same initial weights, the same optimizer, schedule,
gradient clipping, batch size and number of steps. danlu: `Task.encode` (lazy windows) + `collate` +
`danlu.train.loop.fit_loop` (its logging, history.json and the final checkpoint included). Plain: the
windows cut once from one tensor with `unfold`, a random permutation per epoch, and the textbook loop
below. Prints both times, the ratio, each trained model's MSE on every 8th training window (speed is
not bought with quality), and the CPU model and flags.

    .venv/bin/python benchmarks/forecast_train.py [--arch dlinear] [--steps 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from danlu.recipe import recipe_from_dict  # noqa: E402
from danlu.tasks import make_task  # noqa: E402
from danlu.tasks.forecasting.data import load  # noqa: E402
from danlu.train.loop import fit_loop, lr_factor  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="dlinear", choices=["dlinear", "patchtst", "lstm"])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--context", type=int, default=336)
    p.add_argument("--horizon", type=int, default=96)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data", default=os.environ.get("DANLU_DATA", str(DEFAULT_DATA)))
    return p.parse_args()


def cpu() -> tuple[str, str]:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown", ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    shown = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile") if f in flags]
    return name, " ".join(shown)


def plain_loop(model, values: torch.Tensor, starts: torch.Tensor, args, seed: int) -> None:
    """The loop anyone would write: windows by indexing one tensor, Adam, MSE, clipping, cosine decay."""
    context, horizon, targets = args.context, args.horizon, values.shape[1]
    windows = values.unfold(0, context + horizon, 1).permute(0, 2, 1)[starts]  # (windows, span, series)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor("cosine", step, 0, args.steps))
    generator = torch.Generator().manual_seed(seed)
    step = 0
    model.train()
    while step < args.steps:
        for batch in torch.randperm(len(windows), generator=generator).split(args.batch_size):
            chunk = windows[batch]
            out = model(past_values=chunk[:, :context], labels=chunk[:, context:, :targets])
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            if step >= args.steps:
                break


@torch.no_grad()
def training_mse(model, values: torch.Tensor, starts: torch.Tensor, args) -> float:
    """The trained model's MSE over every 8th training window: the same yardstick for both loops."""
    context, horizon = args.context, args.horizon
    windows = values.unfold(0, context + horizon, 1).permute(0, 2, 1)[starts[::8]]
    model.eval()
    out = model(past_values=windows[:, :context], labels=windows[:, context:])
    return float(out["loss"])


def main() -> None:
    args = parse()
    recipe = recipe_from_dict({
        "name": "bench", "task": "forecasting", "data": {"source": f"{args.data}/ett/ETTh1.csv"},
        "forecast": {"time": "date", "context": args.context, "horizon": args.horizon,
                     "split": {"train": 8640, "validation": 2880, "test": 2880}},
        "model": {"arch": args.arch},
        "train": {"max_steps": args.steps, "batch_size": args.batch_size, "optimizer": "adam", "lr": args.lr,
                  "schedule": "cosine", "max_grad_norm": 1.0, "precision": "fp32", "progress": False,
                  "checkpoint_every": 10**9, "log_every": 50}})
    splits, _ = load(recipe)
    task = make_task(recipe)
    task.setup(splits.frames["train"])
    train_ds = task.encode(splits.frames["train"], train=True)
    values = torch.as_tensor(train_ds.values)
    starts = torch.as_tensor(train_ds.starts)
    name, flags = cpu()
    print(f"ETTh1 training split: {len(train_ds):,} windows of {args.context} + {args.horizon} steps x 7 series; "
          f"{args.arch}, {args.steps} steps of batch {args.batch_size}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\nCPU: {name} ({os.cpu_count()} cores); flags: {flags}")
    times: dict[str, list[float]] = {"danlu": [], "plain": []}
    losses: dict[str, list[float]] = {"danlu": [], "plain": []}
    for seed in range(args.repeats):
        for engine in ("danlu", "plain"):
            torch.manual_seed(seed)  # the same initial weights for both
            model = task.build_model()
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                if engine == "danlu":
                    cfg = recipe.train.model_copy(update={"seed": seed})
                    result = fit_loop(model, train_ds, None, task.collate, cfg, Path(tmp) / "ck",
                                      Path(tmp) / "history.json", compute_metrics=None, metric=None,
                                      greater_is_better=False, large_model=False, resume=False)
                    model = result.model
                else:
                    plain_loop(model, values, starts, args, seed)
                seconds = time.perf_counter() - start
            loss = training_mse(model, values, starts, args)
            times[engine].append(seconds)
            losses[engine].append(loss)
            print(f"  seed {seed}: {engine:5s} {seconds:7.2f} s ({args.steps / seconds:6.1f} steps/s), "
                  f"training mse {loss:.4f}")
    danlu, plain = statistics.median(times["danlu"]), statistics.median(times["plain"])
    print(f"\nmedian over {args.repeats}: danlu {danlu:.2f} s, plain loop {plain:.2f} s; "
          f"ratio danlu / plain {danlu / plain:.2f}x "
          f"(mean training mse danlu {statistics.mean(losses['danlu']):.4f}, "
          f"plain {statistics.mean(losses['plain']):.4f})")
    if not all(math.isfinite(v) for v in losses["danlu"] + losses["plain"]):
        sys.exit("a loss was not finite")


if __name__ == "__main__":
    main()
