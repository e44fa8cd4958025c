"""Launches and lost ranks on clusters, without one: NCCL's errors, SLURM's variables and torchrun's
as each would reach this code (there is one GPU or none here, never two nodes)."""

import pytest
import torch

from alexnet import distributed, train
from alexnet.distributed import Dist

# NCCL's messages for a peer gone, as libtorch_cuda.so (torch 2.14.1) writes them
NCCL_LOST = [
    "ncclRemoteError: A call failed possibly due to a network error or a remote process exiting prematurely.",
    "[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=12, OpType=ALLREDUCE, "
    "NumelIn=61, NumelOut=61, Timeout(ms)=600000) ran for 600044 milliseconds before timing out.",
    "NCCL communicator was aborted on rank 1.",
]


@pytest.mark.parametrize("message", NCCL_LOST, ids=["remote-error", "watchdog-timeout", "aborted"])
def test_a_rank_lost_under_nccl_is_recognised(message):
    """gloo's messages were the only ones known: under NCCL a lost peer was an unexplained crash."""
    assert distributed.lost_rank(RuntimeError(message), Dist(0, 2, 0, 2)) == "rank 1"
    assert distributed.lost_rank(RuntimeError(message), Dist(0, 8, 0, 4)) == "another rank"
    assert distributed.lost_rank(RuntimeError("CUDA out of memory"), Dist(0, 2, 0, 2)) is None


class _Backend:
    def __init__(self, error):
        self.error = error

    def get_error(self):
        return self.error


def test_nccls_watchdog_error_stops_the_step_as_a_lost_rank(monkeypatch):
    """NCCL's watchdog finds the failure on its own thread: check_peers, before each step's numbers are
    read, turns its error into RankLost, which lost_rank names (exit 5), instead of a SIGABRT."""
    from torch._C._distributed_c10d import ErrorType
    monkeypatch.setattr(distributed, "_nccl_backend", lambda: _Backend(ErrorType.SUCCESS))
    distributed.check_peers()
    for error in (ErrorType.REMOTE_ERROR, ErrorType.TIMEOUT):
        monkeypatch.setattr(distributed, "_nccl_backend", lambda: _Backend(error))
        with pytest.raises(distributed.RankLost) as lost:
            distributed.check_peers()
        assert error.name in str(lost.value)
        assert distributed.lost_rank(lost.value, Dist(1, 2, 1, 2)) == "rank 0"


def test_validation_and_the_epochs_flags_check_for_a_lost_peer(monkeypatch):
    """all_sum (validation's counts, the epoch end's stop flags) checks NCCL's watchdog too: an aborted
    all-reduce's numbers would otherwise decide ε and the epoch's log line."""
    from torch._C._distributed_c10d import ErrorType
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed, "sum_over_ranks", lambda t, device: t)
    monkeypatch.setattr(distributed, "_nccl_backend", lambda: _Backend(ErrorType.SUCCESS))
    assert distributed.all_sum([1.0, 2.0], "cpu") == [1.0, 2.0]
    monkeypatch.setattr(distributed, "_nccl_backend", lambda: _Backend(ErrorType.REMOTE_ERROR))
    with pytest.raises(distributed.RankLost):
        distributed.all_sum([1.0, 2.0], "cpu")


def test_nccl_aborts_the_communicator_not_the_process(monkeypatch):
    """torchrun sets TORCH_NCCL_ASYNC_ERROR_HANDLING=1 (its watchdog kills the process); init asks for
    clean-up only, so that the error reaches check_peers."""
    monkeypatch.setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    for k, v in dict(WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                     TORCHELASTIC_RUN_ID="x").items():
        monkeypatch.setenv(k, v)
    seen = {}

    def init_process_group(backend, **kw):
        import os
        seen.update(backend=backend, handling=os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"])
        raise RuntimeError("stop here")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(distributed.dist, "init_process_group", init_process_group)
    with pytest.raises(RuntimeError, match="stop here"):
        distributed.init(None)
    assert seen == {"backend": "nccl", "handling": distributed.NCCL_CLEAN_UP_ONLY}


SRUN = dict(SLURM_PROCID="1", SLURM_LOCALID="1", SLURM_STEP_NUM_TASKS="8", SLURM_STEP_TASKS_PER_NODE="4(x2)")
TORCHRUN = dict(WORLD_SIZE="8", RANK="1", LOCAL_RANK="1", LOCAL_WORLD_SIZE="4", TORCHELASTIC_RUN_ID="j")


@pytest.mark.parametrize("env, cuda, expect", [
    (SRUN, True, "srun started 8 copies"),  # srun's tasks, no torchrun: each would train alone
    ({**SRUN, "WORLD_SIZE": "8", "RANK": "1"}, True, "without LOCAL_RANK and LOCAL_WORLD_SIZE"),  # by hand
    ({**SRUN, **TORCHRUN}, True, "srun started 4 tasks on a node"),  # 4 agents per node, all GPUs seen
    ({**SRUN, **TORCHRUN, "SLURM_GPUS_PER_TASK": "2", "CUDA_VISIBLE_DEVICES": "2,3"}, True, None),  # own GPUs
    ({**SRUN, **TORCHRUN, "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}, True, "srun started 4 tasks on a node"),
    ({**SRUN, **TORCHRUN, "ALEXNET_IGNORE_SLURM": "1"}, True, None),  # the user's word
    ({**SRUN, "ALEXNET_IGNORE_SLURM": "1"}, True, None),  # one python in `srun -n 8 --pty bash`
    ({**SRUN, **TORCHRUN, "SLURM_STEP_TASKS_PER_NODE": "1(x2)", "SLURM_STEP_NUM_TASKS": "2"}, True, None),
    ({**SRUN, **TORCHRUN}, False, None),  # on CPUs nothing is shared but the cores
    ({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"}, True, None),  # one task: one process
], ids=["srun-alone", "world-by-hand", "tasks-share-gpus", "gpus-per-task", "every-task-every-gpu",
        "ignore-slurm", "ignore-slurm-one-process", "one-task-per-node", "cpu", "one-task"])
def test_slurm_launches_are_placed_or_refused_with_the_command_that_works(env, cuda, expect):
    """A launch that would put two ranks' towers on one GPU (or leave GPUs idle) is refused before
    the process group is joined, with torchrun's SLURM command; the supported ones pass. Before, the
    defaults (LOCAL_WORLD_SIZE = WORLD_SIZE, LOCAL_RANK = 0) placed them wrong without a word."""
    problem = distributed.launch_problem(env, use_cuda=cuda)
    if expect is None:
        assert problem is None
    else:
        assert expect in problem and "torchrun" in problem
        assert ("ALEXNET_IGNORE_SLURM=1" in problem) == expect.startswith("srun")  # where SLURM decided


def test_a_refused_launch_exits_2_before_joining(monkeypatch, tmp_path, capsys):
    for k, v in SRUN.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *a, **kw: pytest.fail("joined"))
    with pytest.raises(SystemExit) as e:
        train.main(["--cache", str(tmp_path), "--run-dir", str(tmp_path / "run")])
    assert e.value.code == 2 and "srun started 8 copies" in capsys.readouterr().err


def test_a_lost_rank_says_which_checkpoint_a_rerun_resumes_from(tmp_path):
    """It vouched for "the newest checkpoint" when none had been written."""
    assert "no checkpoint yet" in train.resume_from(tmp_path / "run")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ckpt-e0001-s000000006.pt").write_bytes(b"")
    said = train.resume_from(tmp_path / "run")
    assert "ckpt-e0001-s000000006.pt (step 6)" in said and "resume" in said


def test_a_fault_mid_training_is_not_reported_as_a_bad_argument(tiny_cache, tmp_path, monkeypatch):
    """A ValueError raised while training is this code's fault: a traceback, not 'error: ...' and exit 2
    as for a bad flag (--log-steps under torchrun was reported so)."""
    from alexnet import engine

    from .conftest import train_argv

    def run(self):
        raise ValueError("too many values to unpack (expected 4)")
    monkeypatch.setattr(engine.Trainer, "run", run)
    with pytest.raises(RuntimeError, match=r"training failed at step 0: ValueError\('too many values"):
        train.main(train_argv(tiny_cache, tmp_path / "run"))


def test_torchrun_leaves_rank_0_time_for_its_checkpoint_after_a_sigterm(tmp_path):
    """torchrun SIGKILLs its processes 30 s after it forwards a SIGTERM (torch 2.14's default), less than
    a step and a checkpoint on network storage: the README's SLURM script and run_all's torchrun jobs
    give --shutdown-timeout (they gave nothing)."""
    import re

    from alexnet.config import AlexNetConfig
    from alexnet.engine import TrainOptions
    from reproduce.run_all import job_command

    from .conftest import ROOT
    script = (ROOT / "README.md").read_text().split("#SBATCH", 1)[1].split("```", 1)[0]
    assert "srun torchrun" in script
    assert int(re.search(r"--shutdown-timeout[ =](\d+)", script).group(1)) >= distributed.SHUTDOWN_TIMEOUT_S
    opts = TrainOptions(cache=tmp_path, run_dir=tmp_path / "run", devices=(torch.device("cpu"),) * 2)
    cmd = job_command(AlexNetConfig.from_profile("paper", num_classes=4), opts, nproc=2)
    assert f"--shutdown-timeout={distributed.SHUTDOWN_TIMEOUT_S}" in cmd
