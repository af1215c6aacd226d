"""`danlu train RECIPE --nproc N`: the run directory chosen once, then the same command on N processes.

The launcher is PyTorch's (torchrun, danlu.train.distributed.launch); this process only checks
what would fail on every process alike, picks the run directory (a new one, or the unfinished run
of the same recipe, which then resumes from its newest checkpoint) and waits.
"""

from __future__ import annotations

from pathlib import Path

from danlu.errors import RunError
from danlu.pipeline.stages import check_distributed, open_run
from danlu.run import Run
from danlu.train.distributed import launch


def launch_training(recipe, path: Path, overrides: list[str], out_dir: Path | None, runs_root: Path,
                    nproc: int, say=None) -> Run:
    say = say or (lambda msg: None)
    check_distributed(recipe, out_dir or "-", nproc)
    run, resuming = open_run(recipe, out_dir, runs_root)
    say(f"{nproc} processes ({'resuming ' if resuming else ''}{run.root})")
    code = launch(nproc, ["train", str(path), *overrides, "-o", str(run.root), "--runs-root", str(runs_root)])
    if code != 0:
        raise RunError(f"the training processes stopped (exit status {code}); the same command resumes "
                       f"{run.root} from its newest checkpoint")
    return run
