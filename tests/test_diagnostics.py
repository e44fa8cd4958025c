"""Per-step diagnostics: --log-steps, the record of a non-finite step, and its replay (tools.replay)."""

import io
import json
import math

import pytest
import torch

from alexnet.data.cache import Cache
from alexnet.diagnostics import StepLog, read_steps
from alexnet.train import main as train_main
from tests.conftest import train_argv
from tools.replay import replay, verdict


@pytest.fixture(scope="module")
def diverged(tiny_cache, tmp_path_factory):
    """A tiny run made to diverge on purpose (ε = 30): its run directory."""
    run_dir = tmp_path_factory.mktemp("diverged") / "run"
    assert train_main(train_argv(tiny_cache, run_dir, "--lr", "30", "--epochs", "2", "--log-steps")) == 3
    return run_dir


def test_a_nonfinite_step_records_its_batch(diverged, tiny_cache):
    rec = json.loads((diverged / "nonfinite.json").read_text())
    steps = read_steps(diverged / "steps.jsonl")
    assert not math.isfinite(float(rec["loss"])) and rec["epoch"] == 1 and rec["last_good_checkpoint"] is None
    assert [s["step"] for s in steps] == list(range(1, rec["step"] + 1))  # a line per step, to the bad one
    assert not math.isfinite(steps[-1]["loss"]) and all(math.isfinite(s["loss"]) for s in steps[:-1])
    # the batch's sample ids are the loader's batch: its permutation of epoch 0, at the recorded index
    from alexnet.config import AlexNetConfig
    from alexnet.data.loader import Loader
    cfg = AlexNetConfig.from_dict(json.loads((diverged / "config.json").read_text())["config"])
    loader = Loader(Cache(tiny_cache),
                    "train", cfg, train=True, batch_size=4, workers=0, device="cpu", seed=cfg.seed)
    order = loader.order(0)
    assert rec["samples"] == order[rec["batch"] * 4:(rec["batch"] + 1) * 4].tolist()
    assert rec["names"] == [Cache(tiny_cache).names("train")[i] for i in rec["samples"]]
    assert set(steps[0]["act_max"]) == set(steps[0]["grad_norm"]) and "fc8" in steps[0]["act_max"]


def test_replay_retraces_the_run_and_finds_the_dynamics(diverged):
    """From the initial weights (it diverged before its first checkpoint): the run's own arithmetic
    gives the logged losses to the bit, and float64 diverges too, so the verdict is the dynamics."""
    out = io.StringIO()
    report = replay(diverged, json.loads((diverged / "nonfinite.json").read_text())["step"], out=out)
    logged = [s["loss"] for s in read_steps(diverged / "steps.jsonl")]
    got = [r["run"] for r in report["losses"]]
    assert got[:-1] == logged[:-1] and not math.isfinite(got[-1])
    assert report["losses"][0]["float64"] == pytest.approx(logged[0], rel=1e-5)
    assert report["verdict"].startswith("dynamics"), out.getvalue()
    assert (diverged / f"replay-step{report['step']}.json").exists()


def test_replay_crosses_epochs_with_the_runs_options_and_says_not_reproduced(tiny_cache, tmp_path):
    """A run of two epochs of 2 batches (its own --train-batches), checkpointed only at its end, with
    a warmup over its first epoch (ε/2, then ε) and the velocity rescaled at each change of ε: step 3,
    in epoch 2, is replayed from the initial weights across the epoch boundary and gives the logged
    losses bit for bit, and the float64 twin follows them (before: the replay ran every step at the
    full ε, and the twin's velocity was never rescaled). The run's loss there went non-finite (the
    record written by hand: what a corrupted input or a race would leave) but neither replay's did:
    the verdict says not reproduced."""
    run_dir = tmp_path / "run"
    assert train_main(train_argv(tiny_cache, run_dir, "--epochs", "2", "--train-batches", "2",
                                 "--checkpoint-epochs", "2", "--log-steps", "--lr-warmup-epochs", "1",
                                 "--velocity-rescale")) == 0
    (run_dir / "nonfinite.json").write_text(json.dumps({"step": 3, "loss": "nan"}))
    report = replay(run_dir, 3, out=io.StringIO())
    assert report["start"] is None and [r["epoch"] for r in report["losses"]] == [1, 1, 2]
    logged = read_steps(run_dir / "steps.jsonl")
    assert [s["lr"] for s in logged[:3]] == [0.005, 0.01, 0.01]
    assert [r["run"] for r in report["losses"]] == [s["loss"] for s in logged[:3]]
    for r, s in zip(report["losses"], logged):
        assert r["float64"] == pytest.approx(s["loss"], rel=1e-4)
    assert report["verdict"].startswith("not reproduced")
    steps = sorted(torch.load(p, weights_only=True)["step"] for p in run_dir.glob("ckpt-*.pt"))
    assert steps == [4]  # the replay wrote no checkpoint into the run


def test_the_replay_verdict_reads_the_run_and_both_replays():
    """tools.replay.verdict's cases, from the three losses at the step (10 classes: 2·ln C = 4.6)."""
    nan = float("nan")
    assert verdict(2.0, 2.0, 2.0, 10).startswith("finite") and "diverging" not in verdict(2.0, 2.0, 2.0, 10)
    assert "diverging" in verdict(2.0, 2.0, 9.0, 10)
    assert verdict(nan, 2.0, 2.0, 10).startswith("not reproduced")
    assert verdict(nan, nan, nan, 10).startswith("dynamics:")
    assert verdict(nan, nan, 2.0, 10).startswith("arithmetic")
    assert verdict(2.0, 2.0, nan, 10).startswith("dynamics, at the edge")


def test_step_log_keeps_the_lines_up_to_the_resumed_step(tmp_path):
    log = StepLog(tmp_path)
    for s in range(1, 6):
        log.write({"step": s})
    log.close()
    StepLog(tmp_path, resumed_step=3).close()
    assert [r["step"] for r in read_steps(tmp_path / "steps.jsonl")] == [1, 2, 3]


def test_kick_and_curvature_number_follow_their_formulas():
    from alexnet.diagnostics import curvature_number, kick, momentum_limit
    # 10 classes, batch 32: a class's share of a batch varies by √(0.1 · 0.9 / 32) = 0.0530
    assert kick(0.01, 3000.0, 10, 32) == pytest.approx(0.01 * 3000 * math.sqrt(0.09 / 32))
    assert kick(0.01, 3000.0, 10, 128) == pytest.approx(kick(0.01, 3000.0, 10, 32) / 2)  # 4× the batch: half
    assert curvature_number(0.01, 3000.0, 10) == pytest.approx(3.0)
    assert momentum_limit(0.9) == pytest.approx(3.8)


def test_the_study_counts_a_run_as_diverged_or_dead_by_its_steps():
    from reproduce.stability import outcome
    calm = [{"loss": v, "fc8_input_sq": 9.0} for v in (2.4, 3.0, 2.2)]
    assert not outcome(calm, 10)["diverged"]
    assert outcome(calm, 10)["overshoot"] == pytest.approx(3.0 - math.log(10))
    high = [{"loss": v, "fc8_input_sq": 9.0} for v in (2.4, 4.7, 2.2)]  # 4.7 > 2 ln 10 = 4.61
    assert outcome(high, 10)["diverged"] and not outcome(high, 10)["nonfinite"]
    nan = [{"loss": 2.4, "fc8_input_sq": 9.0}, {"loss": math.nan, "fc8_input_sq": math.nan}]
    assert outcome(nan, 10)["nonfinite"] and outcome(nan, 10)["diverged"]
    dead = [{"loss": 25.0, "fc8_input_sq": 9.0}, {"loss": math.log(10), "fc8_input_sq": 0.0}]
    assert outcome(dead, 10)["dead"]


def test_replay_options_are_the_runs_own():
    from tools.replay import run_options
    info = {"cache": "c", "devices": ["cpu", "cpu"], "options": {
        "cache": "c", "run_dir": "r", "devices": None, "decoder": "gpu", "compile": False, "fast": True,
        "init_from": "runs/pretrain", "train_batches": 3, "workers": 8, "log_steps": True}}
    opts = run_options(info, "scratch", None, None)
    assert (opts.decoder, opts.compile, opts.fast, str(opts.init_from), opts.train_batches) == \
        ("gpu", False, True, "runs/pretrain", 3)
    assert (str(opts.run_dir), opts.devices, opts.workers, opts.log_steps) == \
        ("scratch", ("cpu", "cpu"), 0, False)
    assert run_options(info, "scratch", None, "cuda:0,cuda:0".split(",")).devices == ("cuda:0", "cuda:0")


def test_replay_verdicts_do_not_contradict_themselves():
    from tools.replay import verdict
    v = verdict(1.0, 1.0, math.nan, 10)  # float64 alone non-finite
    assert v.startswith("dynamics, at the edge") and "neither replay is non-finite" not in v
    assert verdict(math.nan, 1.0, 1.0, 10).startswith("not reproduced")
    assert verdict(math.nan, math.nan, 1.0, 10).startswith("arithmetic")
    assert verdict(1.0, 1.0, 30.0, 10).startswith("finite") and "diverging" in verdict(1.0, 1.0, 30.0, 10)


def test_replay_gives_each_rank_of_a_torchrun_job_the_masks_it_drew(tiny_cache, tmp_path):
    """A torchrun job of two ranks, replayed in one process (issue 46 f: before, replay drew one
    process's masks for the whole global batch, and ignored world_size): global row j holds what rank
    j % 2 drew at that step for its row j // 2, from (seed, tower, rank, step), in both towers."""
    from tests.test_engine import tiny_trainer
    from tools.replay import job_masks
    trainer = tiny_trainer(tiny_cache, tmp_path)
    trainer.step = 3
    masks = job_masks(trainer, 2)
    trainer.net.train()
    for rank in (0, 1):
        trainer.dist.rank = rank
        trainer.seed_dropout()  # what the rank's training loop does before step 4
        for name in ("drop6", "drop7"):  # in the model's order: each tower's drop6, then drop7
            for i, tower in enumerate(trainer.net.towers):
                drew = getattr(tower, name)(torch.ones(4, 2048)).ne(0)
                assert torch.equal(masks[f"t{i}.{name}"][rank::2].bool(), drew), (rank, i, name)
    assert not torch.equal(masks["t0.drop6"][0::2], masks["t0.drop6"][1::2])
