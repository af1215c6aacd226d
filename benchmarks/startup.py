"""Start-up cost: `danlu --help`, the imports a training run pays, and the quickstart end to end.

Runs each command in a fresh process, `--repeats` times in turn for every checkout given (so a change
in the machine's load falls on all of them alike), and prints medians and their ratios against the
first checkout. A checkout is a folder holding a `danlu/` package; it is put first on PYTHONPATH, so
the same virtual environment runs an older commit, e.g. `git worktree add /tmp/before b5c55a1`.

    .venv/bin/python benchmarks/startup.py --checkout /tmp/before --checkout . --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model}, {os.cpu_count()} CPUs, flags: {' '.join(shown) or 'none of avx2/avx512'}"


def commands(checkout: Path, scratch: Path) -> dict[str, list[str]]:
    py = sys.executable
    return {
        "danlu --help": [py, "-c", "import sys; sys.argv = ['danlu', '--help']; from danlu.cli import main; main()"],
        "import danlu.pipeline": [py, "-c", "import danlu.pipeline"],
        "quickstart (train)": [py, "-c", "import sys; from danlu.cli import main; "
                               f"sys.argv = ['danlu', 'train', '{checkout / 'recipes' / 'quickstart.yaml'}', "
                               f"'-o', '{scratch / 'run'}']; main()"],
    }


def timed(cmd: list[str], checkout: Path, scratch: Path) -> float:
    shutil.rmtree(scratch / "run", ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(checkout), "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=scratch, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):  # `--help` of some typer versions exits 0, a gate warning may exit 1
        raise SystemExit(f"{cmd} failed in {checkout}:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", type=Path, required=True,
                        help="a folder with a danlu/ package; the first is the baseline")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    checkouts = [c.resolve() for c in args.checkout]
    print(f"CPU: {cpu()}; Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        names = list(commands(checkouts[0], scratch))
        times = {(c, n): [] for c in checkouts for n in names}
        for _ in range(args.repeats):
            for name in names:
                for checkout in checkouts:
                    times[(checkout, name)].append(timed(commands(checkout, scratch)[name], checkout, scratch))
    base = checkouts[0]
    for name in names:
        first = statistics.median(times[(base, name)])
        for checkout in checkouts:
            median = statistics.median(times[(checkout, name)])
            print(f"{name:24s} {str(checkout):40s} median {median:6.2f} s over {args.repeats} "
                  f"(min {min(times[(checkout, name)]):.2f})  {first / median:5.2f}x the first")


if __name__ == "__main__":
    main()
