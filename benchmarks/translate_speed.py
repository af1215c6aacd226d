"""Beam-search translation throughput: danlu's predict path against transformers' `generate` called directly.

Same finished run, same model weights, same sentences (the run's own test split), same decoding settings
(the run's beams and length penalty). danlu: `task.predict`, the path `danlu predict` and the server take
(batches of similar source length, each capped at 2 x its longest source + 10 new tokens). Direct: the
sentences in file order, `batch-size` at a time, padded by the tokenizer, `model.generate` with the run's
`max_new_tokens`, decoded. Prints sentences/s of both, their ratio, each side's BLEU (so speed is never
bought with quality) and how many translations are identical, with the CPU model and flags.

    .venv/bin/python benchmarks/translate_speed.py [RUN] [--sentences 1000] [--batch-size 32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import cpu  # noqa: E402

from danlu.inference import TorchForward  # noqa: E402
from danlu.recipe import load_recipe  # noqa: E402
from danlu.run import Run  # noqa: E402
from danlu.tasks import load_task  # noqa: E402
from danlu.tasks.translation.decode import score  # noqa: E402
from danlu.train import silence_transformers  # noqa: E402


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("run", nargs="?", help="a finished translation run (default: the newest runs/multi30k-en-de-*)")
    p.add_argument("--sentences", type=int, default=1000, help="of the run's test split, from its start")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per generate call, both sides")
    p.add_argument("--repeats", type=int, default=2, help="timed passes of each side; the best is kept")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    return p.parse_args()


def newest_run() -> Path:
    done = [p for p in sorted(Path("runs").glob("multi30k-en-de-*")) if Run(p).state().get("status") == "done"]
    if not done:
        raise SystemExit("no finished runs/multi30k-en-de-* run; train recipes/multi30k_en_de.yaml or name a run")
    return done[-1]


@torch.inference_mode()
def direct(model, tokenizer, sources: list[str], cfg: dict, batch_size: int) -> list[str]:
    out = []
    for start in range(0, len(sources), batch_size):
        batch = tokenizer(sources[start:start + batch_size], padding=True, truncation=True, return_tensors="pt")
        generated = model.generate(**batch, num_beams=cfg["beams"], length_penalty=cfg["length_penalty"],
                                   max_new_tokens=cfg["max_new_tokens"], early_stopping=True, do_sample=False)
        out += tokenizer.batch_decode(generated, skip_special_tokens=True)
    return out


def best_of(repeats: int, fn) -> tuple[list[str], float]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, min(times)


def main() -> None:
    args = parse()
    silence_transformers()
    torch.set_num_threads(args.threads)
    run = Run(args.run or newest_run())
    recipe = load_recipe(run.recipe_path, base_dir=run.state().get("recipe_dir"))
    splits, _ = recipe.spec.load_data(recipe)
    test = splits.frames["test"].head(args.sentences)
    sources, references = test["source"].tolist(), test["target"].tolist()
    task, model = load_task(run.model_dir)
    cfg = task.cfg
    print(f"run {run.root}: {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters; "
          f"{len(sources):,} test sentences, beams {cfg['beams']}, length penalty {cfg['length_penalty']:g}, "
          f"batch {args.batch_size}\nCPU: {cpu()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    forward = TorchForward(model)
    frame = test[["source"]]
    ours, ours_s = best_of(args.repeats, lambda: [p["translation"] for p in
                                                 task.predict(forward, frame, batch_size=args.batch_size)])
    plain, plain_s = best_of(args.repeats, lambda: direct(model, task.tokenizer, sources, cfg, args.batch_size))
    same = sum(a == b for a, b in zip(ours, plain))
    rows = (("danlu predict (length-grouped, capped)", ours, ours_s),
            ("model.generate directly (file order)", plain, plain_s))
    print(f"\n{'path':42s} {'seconds':>8s} {'sentences/s':>12s} {'BLEU':>6s}")
    for label, texts, seconds in rows:
        print(f"{label:42s} {seconds:8.1f} {len(texts) / seconds:12.1f} {score(texts, references, cfg['target_language'])['bleu']:6.2f}")
    print(f"speed-up (danlu / direct sentences/s): {plain_s / ours_s:.2f}x; identical translations: "
          f"{same:,} of {len(sources):,}; best of {args.repeats} passes each")


if __name__ == "__main__":
    main()
