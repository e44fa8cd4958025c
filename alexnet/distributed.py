"""Several GPUs: data-parallel replicas of the two-GPU model.

    torchrun --nproc_per_node=4 -m alexnet.train --cache cache/imagenet --run-dir runs/1cnn   # 8 GPUs

One replica owns two GPUs (the paper's model parallelism); process r on a
node uses GPUs 2r and 2r+1. With more GPUs than two, replicas are
data-parallel through torch.distributed (DDP over the multi-device module,
NCCL; gloo on CPU). Each rank takes rows r::K of every global batch, so the
global batch stays `cfg.batch_size` and K processes see exactly the images,
crops, flips and PCA lighting of one process (those are drawn per global
batch from (seed, epoch, batch) and sliced). What differs from one process:
dropout. Every replica starts from the same weights; before each step each
of its towers seeds its own dropout generator from (seed, tower, rank, step)
(engine.Trainer.seed_dropout), so a resumed replica draws the masks it would
have drawn uninterrupted.
The replicas' masks differ from each other (tested with two gloo processes)
but are not the masks one process would have drawn for the same rows; their
statistics are the same (each unit is kept with probability 1 − p,
independently), which is what §4.2 asks. The
gradient is the mean over the global batch, as in one process (DDP
averages), up to float32 summation order. The log's training loss and error
are the global batch's (each step's counts are summed over ranks).

Several machines: the same command on every node, with torchrun's c10d
rendezvous. Every rank resumes from the checkpoint it finds in --run-dir,
so that directory must be one that all nodes share; the ranks compare the
checkpoint step they found (`agree_on_start`) and all stop, naming each
node, when they differ. A signal (SLURM's SIGTERM to every task, forwarded by
torchrun) stops every rank after the same step: each step's all-reduced
numbers carry every rank's stop flag (engine.Trainer.stop_requested). Tested
as two "nodes" on 127.0.0.1
(tests/test_engine.py::test_two_nodes_train_as_one_process_and_refuse_run_dirs_they_do_not_share).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .placement import resolve_devices


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # processes on this node: they share its cores

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init(devices_arg: str | None = None) -> tuple[Dist, tuple[torch.device, torch.device]]:
    """Join the process group when launched by torchrun; pick this rank's devices."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), resolve_devices(devices_arg)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    use_cuda = torch.cuda.is_available() and devices_arg != "cpu"
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    if devices_arg and devices_arg != "cpu":
        raise ValueError("--devices is chosen per rank under torchrun (GPUs 2r, 2r+1); leave it out")
    if not use_cuda:
        devices = resolve_devices("cpu")
    else:
        n = torch.cuda.device_count()
        if n >= 2 * local_world:
            devices = resolve_devices(f"cuda:{2 * local},cuda:{2 * local + 1}")
        elif n >= local_world:
            devices = resolve_devices(f"cuda:{local}")
        else:
            raise ValueError(f"{local_world} processes per node but only {n} GPUs; "
                             f"use --nproc_per_node={max(1, n // 2)}")
        torch.cuda.set_device(devices[0])
    return Dist(rank, world, local, local_world), devices


class RunDirNotShared(RuntimeError):
    """The ranks found different checkpoints in --run-dir: they would train different models."""


def agree_on_start(d: Dist, step: int | None, path, run_dir) -> None:
    """Every rank must start from the same checkpoint step (None: none found). Ranks on
    nodes that do not share --run-dir would otherwise average one model's gradients into
    another's weights (rank 0 resumed, the others from scratch), and rank 0 would write the
    result as a checkpoint. Raises RunDirNotShared on every rank, naming each node."""
    if not d.active:
        return
    mine = {"node": os.environ.get("GROUP_RANK", "0"), "rank": d.rank, "host": socket.gethostname(),
            "step": step, "where": str(path) if path is not None else f"no checkpoint in {run_dir}"}
    everyone: list = [None] * d.world_size
    dist.all_gather_object(everyone, mine)
    if len({e["step"] for e in everyone}) == 1:
        return
    seen = "; ".join(f"node {e['node']} (rank {e['rank']} on {e['host']}): "
                     + (f"step {e['step']} ({e['where']})" if e["step"] is not None else e["where"])
                     for e in everyone)
    raise RunDirNotShared(f"the ranks found different checkpoints ({seen}); every node must see the "
                          "same --run-dir, on a file system they share, so that they resume one run. "
                          "Stopped before training.")


def sum_over_ranks(t: torch.Tensor, device) -> torch.Tensor:
    """A step's numbers (loss sum, errors, count) summed over ranks, so the log's training loss
    and error are the global batch's, as in one process, and the same on every rank (a resumed
    rank takes them from rank 0's checkpoint). On a GPU this only queues the reduction."""
    if not (dist.is_available() and dist.is_initialized()):
        return t
    t = t.to(device)
    dist.all_reduce(t)
    return t


def all_sum(values: list[float], device) -> list[float]:
    """Sum numbers over ranks (exact counts for validation)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    return sum_over_ranks(torch.tensor(values, dtype=torch.float64, device=device), device).tolist()


# The longest one rank waits for the others in one collective before it gives up (a node that
# vanished without closing its connections; a killed process closes them, and its peers learn it at
# once). The longest legitimate wait is rank 0 writing a checkpoint (435 MB; on network storage up to
# a minute) while the others wait in the next step's all-reduce: ten minutes leaves room for that.
COLLECTIVE_TIMEOUT = timedelta(minutes=10)
_LOST = re.compile(r"Connection closed by peer|Connection reset by peer|Socket closed|[Tt]imed out waiting")
_PEER = re.compile(r"\[([0-9a-fA-F.:]+)\]:(\d+)")  # gloo's "[127.0.0.1]:8108"


def lost_rank(error: BaseException, d: Dist) -> str | None:
    """When a collective failed because another rank is gone (its process killed, its node lost):
    which one, as far as the error tells ('rank 1 at 127.0.0.1:8108'); None for any other error."""
    text = str(error)
    if not d.active or not _LOST.search(text):
        return None
    who = f"rank {1 - d.rank}" if d.world_size == 2 else "another rank"
    peer = _PEER.search(text)
    return who + (f" at {peer.group(1)}:{peer.group(2)}" if peer else "")


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
