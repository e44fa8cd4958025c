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


TORCHRUN_SLURM = ("srun --ntasks-per-node 1 torchrun --nnodes $SLURM_NNODES --nproc_per_node N "
                  "--rdzv-backend c10d --rdzv-endpoint HEAD:29400 --rdzv-id $SLURM_JOB_ID "
                  "-m alexnet.train ... "
                  "(one task per node, N = the node's GPUs / 2; README, \"On SLURM\")")


IGNORE_SLURM = "ALEXNET_IGNORE_SLURM"  # 1: launch_problem reads no SLURM variable


def launch_problem(env, use_cuda: bool) -> str | None:
    """Why a launch cannot place its ranks right, with the command that can; None when it can.
    This code takes its ranks and GPUs from torchrun (RANK, LOCAL_RANK, LOCAL_WORLD_SIZE). Under
    SLURM the supported launch is one srun task per node running torchrun, which starts the node's
    processes: srun's own tasks carry no torchrun variables, and several tasks on one node would each
    take GPUs 0 and 1 (unless SLURM gave every task its own, SLURM_GPUS_PER_TASK: then each task's
    torchrun places its processes on its own GPUs, though their loaders share the node's cores)."""
    world = int(env.get("WORLD_SIZE", "1"))
    tasks = int(env.get("SLURM_STEP_NUM_TASKS", "1"))
    if env.get(IGNORE_SLURM) == "1":
        tasks = 1  # the user's word: SLURM's variables say nothing about this launch
    bypass = f" (if SLURM's variables do not describe this launch, set {IGNORE_SLURM}=1)"
    if world == 1 and tasks > 1 and "SLURM_PROCID" in env:
        return (f"srun started {tasks} copies of this command, and each would train alone on the same "
                f"--run-dir; run one task per node that runs torchrun: {TORCHRUN_SLURM}{bypass}")
    if world > 1 and not ("LOCAL_RANK" in env and "LOCAL_WORLD_SIZE" in env):
        return (f"WORLD_SIZE={world} without LOCAL_RANK and LOCAL_WORLD_SIZE: launched by hand or by srun "
                "alone, this process cannot tell which GPUs are its own; launch it with torchrun, which "
                f"sets them: {TORCHRUN_SLURM}")
    per_node = [int(n) for n in re.findall(r"(\d+)(?:\(x\d+\))?", env.get("SLURM_STEP_TASKS_PER_NODE", ""))]
    shared = tasks > 1 and max(per_node, default=1) > 1 and "SLURM_GPUS_PER_TASK" not in env
    if world > 1 and use_cuda and shared:
        return (f"srun started {max(per_node)} tasks on a node, and SLURM gave none its own GPUs: their "
                f"torchrun processes would share GPUs 0, 1, ...; run one task per node: {TORCHRUN_SLURM}"
                f"{bypass}")
    return None


def init(devices_arg: str | None = None) -> tuple[Dist, tuple[torch.device, torch.device]]:
    """Join the process group when launched by torchrun; pick this rank's devices. Raises
    ValueError, before joining, for a launch whose ranks would land on the wrong GPUs."""
    use_cuda = torch.cuda.is_available() and devices_arg != "cpu"
    problem = launch_problem(os.environ, use_cuda)
    if problem:
        raise ValueError(problem)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), resolve_devices(devices_arg)
    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    local_world = int(os.environ["LOCAL_WORLD_SIZE"])
    if use_cuda and os.environ.get("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1") == "1":  # torchrun's default
        os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = NCCL_CLEAN_UP_ONLY  # see check_peers
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
    check_peers()
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
    summed = sum_over_ranks(torch.tensor(values, dtype=torch.float64, device=device), device).tolist()
    check_peers()  # NCCL: numbers of an aborted all-reduce are not used (validation, the epoch's stop flags)
    return summed


# The longest one rank waits for the others in one collective before it gives up (a node that
# vanished without closing its connections; a killed process closes them, and its peers learn it at
# once). The longest legitimate wait is rank 0 writing a checkpoint (435 MB; on network storage up to
# a minute) while the others wait in the next step's all-reduce: ten minutes leaves room for that.
COLLECTIVE_TIMEOUT = timedelta(minutes=10)
# torchrun --shutdown-timeout: how long its agent waits, after forwarding a SIGTERM, before it SIGKILLs
# the processes (torch 2.14: 30 s by default, TORCH_ELASTIC_SHUTDOWN_TIMEOUT). Rank 0 must finish its
# step and write a checkpoint in that time, up to a minute on network storage: the README's SLURM
# script and run_all's --nproc jobs give this.
SHUTDOWN_TIMEOUT_S = 90
# A collective that failed because a peer is gone, as each backend says it: gloo's closed or reset
# connection and its timeout; NCCL's remote error (a peer's process exited, or the network failed), its
# watchdog's timeout, and a communicator the watchdog aborted after either (libtorch_cuda.so's texts).
_LOST = re.compile(r"Connection closed by peer|Connection reset by peer|Socket closed|[Tt]imed out waiting"
                   r"|ncclRemoteError|remote process exiting|Watchdog caught collective operation timeout"
                   r"|NCCL communicator was aborted")
_PEER = re.compile(r"\[([0-9a-fA-F.:]+)\]:(\d+)")  # gloo's "[127.0.0.1]:8108"
# TORCH_NCCL_ASYNC_ERROR_HANDLING's CleanUpOnly. torchrun sets 1 (TearDown) for its workers: NCCL's
# watchdog then kills the process with SIGABRT when a collective fails or times out, before Python can
# say which rank is gone or exit 5. With 2 it aborts the communicator only, NCCL's kernels return, and
# check_peers turns its error into RankLost. init sets it where the value is torchrun's 1 (or unset);
# another value a user gave (0 or 3) is theirs to keep.
NCCL_CLEAN_UP_ONLY = "2"


class RankLost(RuntimeError):
    """NCCL's watchdog found a collective failed (a peer gone, or the collective timeout passed)."""


def _nccl_backend():
    """The default process group's NCCL backend, or None (gloo, or no process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_backend() != "nccl":
        return None
    return dist.distributed_c10d._get_default_group()._get_backend(torch.device("cuda"))


def check_peers() -> None:
    """Raise RankLost when NCCL's watchdog has seen a collective fail (engine: every step, once the
    host has waited for its numbers and before it uses them, so an aborted all-reduce's numbers are
    never taken for the run's: a step whose peer is gone waits until the watchdog aborts it). gloo
    raises in the collective itself, and then lost_rank reads its message."""
    backend = _nccl_backend()
    if backend is None:
        return
    error = backend.get_error()
    if error.name != "SUCCESS":
        raise RankLost(f"NCCL communicator was aborted: the watchdog reports {error.name} ("
                       "ncclRemoteError: a peer's process exited or the network failed; TIMEOUT: no peer "
                       f"answered within {COLLECTIVE_TIMEOUT})")


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
