"""Where does MLM pretraining on SST-2's own sentences pay off? A grid of `recipes/sst2_mlm.yaml` runs.

Each job is one `pretrain_vs_scratch.run_arm` (a `danlu train` of the recipe with overrides, run folder
OUT/runs/ARM-sSEED) in its own process, so that many small jobs share one GPU (a 2-layer model leaves
a GPU mostly idle). Pretraining jobs (`pt-NAME-s0`:
pretrain, then fine-tune on 2,000 labels, seed 0) come first; the fine-tunes that start from their
models (`model.from=RUN/pretrain/model pretrain=`) follow as each finishes. Baselines: `pretrain=`
(random weights, tokenizer trained on the labelled rows) and `init` (random weights with the
pretrained run's tokenizer and shape). One JSON line per job in OUT/results.jsonl; the pretrained
models come back as OUT/pt-NAME.tar.gz, for more fine-tuning on a CPU with benchmarks/pretrain_vs_scratch.py.
(The recorded runs below predate run_arm: their jobs were named without the -s0.)

The two runs recorded in benchmarks/RESULTS.md (one H200, 2026-11-26):

    python3 benchmarks/pretrain_sst2_grid.py --out $OUT --width 14 --deadline 515 --pretrain-steps 6000
    python3 benchmarks/pretrain_sst2_grid.py --out $OUT --width 5 --deadline 290 --pretrain-steps 7000 \
        --pretrain-only --corpus sst2/train.tsv:sentence --only T15 T15hi T30 T30hi M15

The first ran before the recipe named its corpus, so its pretraining read the 2,000 labelled rows
only. `--quick` checks the plumbing on a CPU in about a minute.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.pretrain_vs_scratch import random_init  # noqa: E402

# Pretraining variants: the model shape and MLM settings that differ from the recipe.
SHAPES = {
    "tiny": [],  # the recipe's: 2 layers, 128 wide, feed-forward 128
    "mini": ["model.layers=4", "model.embedding=256", "model.heads=4", "model.feed_forward=1024"],
}
PRETRAIN = {
    "T15": ("tiny", ["pretrain.mask_prob=0.15", "pretrain.lr=0.001"]),
    "T30": ("tiny", ["pretrain.mask_prob=0.3", "pretrain.lr=0.001"]),
    "T15hi": ("tiny", ["pretrain.mask_prob=0.15", "pretrain.lr=0.003"]),
    "T30hi": ("tiny", ["pretrain.mask_prob=0.3", "pretrain.lr=0.003"]),
    "M15": ("mini", ["pretrain.mask_prob=0.15", "pretrain.lr=0.0005"]),
}
# Fine-tuning settings: labelled rows (None = all 67,349), epochs, lr, seeds.
FEW = ["data.limit={train: 2000}", "train.epochs=10"]
ALL = ["train.epochs=2"]
FINETUNE = [  # the longest first: they are on the critical path
    ("all-lr1e-3", ALL + ["train.lr=0.001"], [0]),
    ("all-lr3e-4", ALL + ["train.lr=0.0003"], [0]),
    ("L2k-lr1e-3", FEW + ["train.lr=0.001"], [0, 1]),
    ("L2k-lr3e-4", FEW + ["train.lr=0.0003"], [0]),
]
# A pretraining job fine-tunes this one arm itself (short, so the fine-tunes that wait for its
# model start early); the rest of FINETUNE follow from its saved model.
FIRST = ("L2k-lr1e-3", 0)
COMMON = ["train.progress=false", "train.compile=false", "train.eval_every=100000",
          "train.checkpoint_every=100000"]


def job_command(arm: str, seed: int, overrides: list[str], runs: Path) -> list[str]:
    """One run of the recipe in its own process: pretrain_vs_scratch.run_arm, which prints its result."""
    code = ("import sys; from pathlib import Path; from benchmarks.pretrain_vs_scratch import run_arm\n"
            "recipe, arm, seed, runs, *over = sys.argv[1:]\n"
            "run_arm(Path(recipe), arm, int(seed), over, Path(runs))\n")
    return [sys.executable, "-c", code, str(ROOT / "recipes" / "sst2_mlm.yaml"), arm, str(seed), str(runs), *overrides]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="/tmp/danlu-mlm-grid")
    p.add_argument("--width", type=int, default=12, help="jobs at once")
    p.add_argument("--deadline", type=float, default=500, help="seconds; later jobs are not started, running ones killed")
    p.add_argument("--pretrain-steps", type=int, default=6000)
    p.add_argument("--only", nargs="*", help="pretraining variants to run (default all)")
    p.add_argument("--corpus", help="pretraining corpus (default the labelled rows), e.g. sst2/train.tsv:sentence")
    p.add_argument("--pretrain-only", action="store_true", help="only the pretraining jobs (and their first fine-tune)")
    p.add_argument("--quick", action="store_true", help="tiny budgets: checks the plumbing on a CPU")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = out / "runs"
    (out / "logs").mkdir(exist_ok=True)
    quick = ["train.max_steps=5", "data.limit={train: 300, validation: 100, test: 100}"] if args.quick else []
    log = open(out / "log.txt", "a", buffering=1)
    results = open(out / "results.jsonl", "a", buffering=1)
    start = time.perf_counter()

    def say(msg: str) -> None:
        log.write(f"{time.perf_counter() - start:7.1f}s {msg}\n")

    corpus = []
    if args.corpus:
        path, _, column = args.corpus.partition(":")
        corpus = [f"pretrain.corpus={path}", *([f"pretrain.column={column}"] if column else [])]
    queue: list[tuple[str, int, list[str]]] = []  # (arm, seed, overrides); the run is runs/ARM-sSEED
    variants = {k: v for k, v in PRETRAIN.items() if not args.only or k in args.only}
    for name, (shape, extra) in variants.items():  # pretraining first: the longest chains
        queue.append((f"pt-{name}", 0, [*SHAPES[shape], *extra, f"pretrain.max_steps={args.pretrain_steps}",
                                        *corpus, *FEW, "train.lr=0.001"]))
    for shape in [] if args.pretrain_only else sorted({s for s, _ in variants.values()}):
        for tag, over, seeds in FINETUNE:
            for seed in seeds:
                queue.append((f"scratch-{shape}-{tag}", seed, [*SHAPES[shape], "pretrain=", *over]))
    running: dict[str, subprocess.Popen] = {}
    waiting: dict[str, list[tuple[str, int, list[str]]]] = {}  # pretraining job -> fine-tunes of its model
    for name, (shape, _) in variants.items():
        follow = []
        for tag, over, seeds in FINETUNE:
            for seed in seeds:
                if (tag, seed) == FIRST:
                    continue
                follow.append((f"mlm-{name}-{tag}", seed, [*SHAPES[shape], "pretrain=", *over,
                                                           f"model.from={runs / f'pt-{name}-s0' / 'pretrain' / 'model'}"]))
        if name in ("T15", "M15"):  # same tokenizer and shape, random weights
            for seed in (0, 1):
                follow.append((f"init-{shape}-L2k-lr1e-3", seed, [*SHAPES[shape], "pretrain=", *FEW, "train.lr=0.001",
                                                                   f"model.from={runs / f'init-{shape}'}"]))
        waiting[f"pt-{name}-s0"] = [] if args.pretrain_only else follow
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    while queue or running:
        for name, proc in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            text = (out / "logs" / f"{name}.txt").read_text()
            found = [line for line in text.splitlines() if line.startswith('{"arm"')]
            if found:
                results.write(found[-1] + "\n")
                say(f"done {name}: {found[-1][:160]}")
            else:
                say(f"FAILED {name} rc={proc.returncode}: {text[-1500:]}")
            if name in waiting:
                follow = waiting.pop(name) if found else []
                model = runs / name / "pretrain" / "model"
                for arm, _, _ in follow:
                    if arm.startswith("init-"):
                        random_init(model, runs / arm.split("-L2k")[0])
                queue[:0] = follow  # ahead of the rest: they are on the critical path
        elapsed = time.perf_counter() - start
        if elapsed > args.deadline:
            for name, proc in running.items():
                proc.kill()
                say(f"killed at the deadline: {name}")
            break
        while queue and len(running) < args.width:
            arm, seed, over = queue.pop(0)
            name = f"{arm}-s{seed}"
            sink = open(out / "logs" / f"{name}.txt", "w")  # a file, not a pipe: a chatty job cannot block
            proc = subprocess.Popen(job_command(arm, seed, [*over, *COMMON, *quick], runs), stdout=sink,
                                    stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
            running[name] = proc
            say(f"start {name}")
        time.sleep(1)
    say(f"not run: {[f'{a}-s{seed}' for a, seed, _ in queue]}")
    for name in variants:  # the pretrained models, for more fine-tuning elsewhere
        model = runs / f"pt-{name}-s0" / "pretrain" / "model"
        if model.exists():
            _halve_if_large(model)
            with tarfile.open(out / f"pt-{name}.tar.gz", "w:gz") as tar:
                tar.add(model, arcname=f"pt-{name}")
    say("finished")


def _halve_if_large(model: Path, limit: int = 15 << 20) -> None:
    """Store weights over `limit` bytes in bf16 (the device hands back files of 16 MiB at most);
    `from_pretrained` casts them back to the config's float32 on load."""
    import torch
    from safetensors.torch import load_file, save_file

    for f in model.glob("*.safetensors"):
        if f.stat().st_size > limit:
            save_file({k: v.to(torch.bfloat16) for k, v in load_file(f).items()}, f, metadata={"format": "pt"})


if __name__ == "__main__":
    main()
