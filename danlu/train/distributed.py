"""Training on many processes: which process this is, and the launch of `danlu train --nproc N`.

Nothing of the distribution is danlu's own: `--nproc` starts the same command under PyTorch's
launcher (torch.distributed.run, i.e. torchrun), and transformers.Trainer, through accelerate, does
the rest: the process group (gloo on a CPU, NCCL on GPUs), DistributedDataParallel or FSDP /
DeepSpeed from the recipe's `distributed:` section, a shard of every batch per process, losses and
evaluation predictions gathered across processes, checkpoints written by the main process only.
The same recipe runs under `torchrun` or `accelerate launch` on many machines.

danlu's part: the recipe's `train.batch_size` stays the global batch (each process takes its share,
so one process and N processes train alike), and only the main process (rank 0) writes the run
directory.
"""

from __future__ import annotations

import os
import subprocess
import sys

from danlu.errors import DanluError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """The process that writes the run directory (every process is, outside a launcher)."""
    return rank() == 0


def per_device_batch(batch_size: int, processes: int | None = None, key: str = "train.batch_size") -> int:
    """Each process's share of the global batch; a batch that does not split evenly is refused."""
    processes = processes or world_size()
    if processes > batch_size or batch_size % processes:
        raise DanluError(f"--nproc {processes}: {key} is {batch_size}, which {processes} processes cannot share "
                         f"evenly (the batch is the global one: use a multiple of {processes}, or fewer processes)")
    return batch_size // processes


def check_strategy(distributed) -> None:
    """A strategy this machine cannot run is refused before any process starts.

    FSDP on a CPU: accelerate turns `fsdp` on only for GPUs and the other accelerators (its
    AcceleratorState sets DistributedType.FSDP inside the branch for MULTI_GPU, MULTI_NPU, MULTI_XPU,
    ...; a gloo run on CPUs is MULTI_CPU, which that branch leaves out), so a CPU run would quietly
    train with DistributedDataParallel instead of sharding."""
    import torch

    if distributed is not None and distributed.strategy == "fsdp" and not torch.cuda.is_available():
        raise DanluError("distributed.strategy: fsdp shards the model through accelerate, which uses FSDP on GPUs "
                         "only; on this CPU it would train with DDP, unsharded: use strategy ddp here")


def launch(nproc: int, argv: list[str]) -> int:
    """Run `danlu <argv>` on `nproc` processes of this machine under torchrun; its exit status."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "--module", "danlu.cli", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1)
                                                                                     // nproc)))}
    return subprocess.call(command, env=env)
