"""Engine: §5's update rule and schedules, checkpoints, kill-and-resume
bit-identity, non-finite loss, 10-patch evaluation, ensembles, torchrun."""

import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet import checkpoint, distributed, train
from alexnet.config import AlexNetConfig
from alexnet.data.cache import Cache
from alexnet.data.loader import Loader
from alexnet.diagnostics import read_steps
from alexnet.engine import errors, evaluate, predict, train_step
from alexnet.model import AlexNet
from alexnet.optim import PaperSGD, param_groups
from alexnet.schedule import CudaConvnetSchedule, PlateauSchedule, same_course

from .conftest import (
    ENV,
    REFERENCE_ARGS,
    ROOT,
    assert_same_run,
    final_weights,
    kill_after_checkpoint,
    run,
    train_argv,
    train_cmd,
    wait_for,
)
from .test_reliability import alive, descendants, exit_status

# ---------- §5 update rule ----------

def test_paper_sgd_matches_float64_loop_across_lr_change():
    torch.manual_seed(0)
    w0 = torch.randn(5, dtype=torch.float64)
    grads = [torch.randn(5, dtype=torch.float64) for _ in range(6)]
    lrs = [0.01, 0.01, 0.01, 0.001, 0.001, 0.001]  # ε ÷ 10 after step 3
    w, v = w0.clone(), torch.zeros(5, dtype=torch.float64)
    for g, eps in zip(grads, lrs):  # §5 verbatim
        v = 0.9 * v - 0.0005 * eps * w - eps * g
        w = w + v
    p = torch.nn.Parameter(w0.clone())
    opt = PaperSGD([p], lr=0.01, momentum=0.9, weight_decay=0.0005)
    q = torch.nn.Parameter(w0.clone())
    sgd = torch.optim.SGD([q], lr=0.01, momentum=0.9, weight_decay=0.0005)
    for g, eps in zip(grads, lrs):
        for o, t in ((opt, p), (sgd, q)):
            o.param_groups[0]["lr"] = eps
            t.grad = g.clone()
            o.step()
    torch.testing.assert_close(p.detach(), w, rtol=1e-14, atol=1e-15)
    # PyTorch's SGD agrees before the change and not after it
    assert (q.detach() - w).abs().max() > 1e-4


def test_paper_sgd_equals_torch_sgd_while_lr_is_constant():
    torch.manual_seed(1)
    w0 = torch.randn(4, dtype=torch.float64)
    p, q = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    a = PaperSGD([p], lr=0.01)
    b = torch.optim.SGD([q], lr=0.01, momentum=0.9, weight_decay=0.0005)
    for _ in range(5):
        g = torch.randn(4, dtype=torch.float64)
        p.grad, q.grad = g.clone(), g.clone()
        a.step()
        b.step()
    torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_paper_sgd_multi_tensor_equals_per_tensor_float32_loop():
    """The foreach (multi-tensor) step must give exactly the floats of the plain
    per-tensor float32 loop, over several tensors and an ε change."""
    torch.manual_seed(2)
    shapes = [(7, 3), (5,), (2, 3, 4)]
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    ref = [p.detach().clone() for p in params]
    vel = [torch.zeros_like(r) for r in ref]
    opt = PaperSGD(params, lr=0.01)
    for step, eps in enumerate([0.01, 0.01, 0.001]):
        grads = [torch.randn(s) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.param_groups[0]["lr"] = eps
        opt.step()
        for w, v, g in zip(ref, vel, grads):
            v.mul_(0.9).add_(w, alpha=-0.0005 * eps).add_(g, alpha=-eps)
            w.add_(v)
    for p, w in zip(params, ref):
        assert torch.equal(p.detach(), w)


def test_param_groups_per_profile():
    model = AlexNet(AlexNetConfig.from_profile("cuda-convnet"), devices=("cpu", "meta"))
    groups = {g["name"]: g for g in param_groups(model, model.config)}
    assert groups["bias"]["lr_mult"] == 2.0 and groups["bias"]["weight_decay"] == 0.0
    assert groups["weight"]["lr_mult"] == 1.0 and groups["weight"]["weight_decay"] == 5e-4
    assert len(groups["conv1.weight"]["params"]) == 2  # one per tower
    paper = {g["name"]: g for g in param_groups(model, AlexNetConfig.from_profile("paper"))}
    assert paper["bias"]["lr_mult"] == 1.0 and paper["bias"]["weight_decay"] == 5e-4
    n = sum(len(g["params"]) for g in groups.values())
    assert n == len(list(model.parameters()))


# ---------- schedules ----------

def test_plateau_schedule_on_scripted_curve():
    s = PlateauSchedule(epochs=90, patience=2, drops=3)
    curve = [0.9, 0.8, 0.7, 0.71, 0.72, 0.6, 0.65, 0.66, 0.5,
             0.55, 0.55, 0.6, 0.5, 0.55, 0.55, 0.4, 0.45, 0.45]
    notes = [s.end_epoch(e, err) for e, err in enumerate(curve)]
    drops_at = [e for e, n in enumerate(notes) if n]
    # two epochs without a new best once improving at this ε (6 and 7 come before any improvement
    # on epoch 5's reference, so they do not count); at most three divisions
    assert drops_at == [4, 10, 14]
    assert s.factors(99)["weight"] == pytest.approx(1e-3)
    # "with the current learning rate": after a division the best restarts, so the first
    # epoch at the new ε is the new reference even if worse than the old ε's best
    s = PlateauSchedule(epochs=90, patience=1, drops=3, min_patience=1)
    notes = [s.end_epoch(e, err) for e, err in enumerate([0.6, 0.5, 0.6, 0.7, 0.65, 0.66])]
    assert [e for e, n in enumerate(notes) if n] == [2, 5]


def test_plateau_patience_scales_with_short_runs_down_to_its_floor():
    assert PlateauSchedule(epochs=90, patience=5).patience == 5
    assert PlateauSchedule(epochs=36, patience=5).patience == 2
    assert PlateauSchedule(epochs=18, patience=5).patience == 2  # 1 scaled; the floor of two epochs
    assert PlateauSchedule(epochs=18, patience=5, min_patience=1).patience == 1
    # the recorded 5cnns-seed2 curve of cpu-full (200 validation images): a floor of one epoch divided
    # ε after epoch 5 on a 4-point rise; two epochs wait for the next, which improved
    curve = [0.9, 0.9, 0.79, 0.715, 0.755, 0.63]
    for floor, want in ((1, [4]), (2, [])):
        s = PlateauSchedule(epochs=14, patience=5, min_patience=floor)
        assert [e for e, err in enumerate(curve) if s.end_epoch(e, err)] == want


def test_a_config_recorded_before_the_patience_floor_keeps_its_rule():
    """A run recorded without lr_patience_min trained with a floor of one epoch: it resumes so,
    and run_all does not take it for a finished run of today's config."""
    new = AlexNetConfig.from_profile("paper", num_classes=10, epochs=14)
    old = {k: v for k, v in new.to_dict().items() if k != "lr_patience_min"}
    assert AlexNetConfig.from_dict(new.to_dict()) == new and new.lr_patience_min == 2
    assert AlexNetConfig.from_dict(old).lr_patience_min == 1
    assert AlexNetConfig.from_dict(old).to_dict() != new.to_dict()


def test_plateau_divides_only_after_the_error_has_improved_at_this_rate():
    """"Stopped improving" presupposes improving: epochs that tie the first one (a run
    sitting at chance while it starts) do not count; once it has improved, they do."""
    s = PlateauSchedule(epochs=10, patience=5, min_patience=1)  # patience scaled to 1 epoch
    notes = [s.end_epoch(e, err) for e, err in enumerate([0.9, 0.9, 0.9, 0.72, 0.725, 0.6])]
    assert [e for e, n in enumerate(notes) if n] == [4]  # not at epochs 1 or 2
    # after a division the first epoch at the new ε is the reference, and must be improved upon again
    notes = [s.end_epoch(e, err) for e, err in enumerate([0.6, 0.61, 0.5, 0.55], start=6)]
    assert [e for e, n in enumerate(notes, start=6) if n] == [9]
    resumed = PlateauSchedule(epochs=10, patience=5, min_patience=1)
    resumed.load_state_dict(s.state_dict())
    assert resumed.state_dict() == s.state_dict()


def test_cuda_convnet_schedule_is_the_recorded_run():
    s = CudaConvnetSchedule(90)
    f = lambda e: s.factors(e)  # noqa: E731
    assert f(24)["weight"] == 1 and f(25)["weight"] == pytest.approx(0.1)
    assert f(51)["weight"] == pytest.approx(0.01) and f(79)["weight"] == pytest.approx(0.001)
    assert f(66)["conv1.weight"] == pytest.approx(0.01)
    assert f(67)["conv1.weight"] * 0.01 == pytest.approx(1e-5) and f(72)["conv1.weight"] == 0
    assert s.lighting(66) and not s.lighting(67)
    short = CudaConvnetSchedule(9)  # scaled by 9/90: milestones at 2 (2.5 → 2), 5, 8
    assert [short.factors(e)["weight"] for e in range(9)] == pytest.approx(
        [1, 1, .1, .1, .1, .01, .01, .01, .001])
    # only epsW is divided: the biases keep epsB = 0.02 (factor 1 × lr_mult 2) to the end,
    # but conv1's, which the final layer-params-145 file has at 0 (with conv1's weights, from 72)
    assert all(f(e)["bias"] == 1 for e in range(91))
    assert f(71)["conv1.bias"] == 1 and f(72)["conv1.bias"] == 0
    # a one-epoch run trains its epoch at the initial ε (25 × 1/90 would round to 0)
    assert CudaConvnetSchedule(1).factors(0) == {"conv1.weight": 1, "conv1.bias": 1, "weight": 1, "bias": 1}


@pytest.mark.parametrize("epochs", [9, 90])
def test_cuda_convnet_profile_rates_are_the_2012_codes(epochs):
    """The ε each parameter group gets, as layer-params-145 and its log have them:
    first epoch weights 0.01 / biases 0.02; after the last drop weights 1e-5,
    biases 0.02, conv1 0."""
    from alexnet.schedule import apply, make_schedule
    cfg = AlexNetConfig.from_profile("cuda-convnet", epochs=epochs)
    opt = PaperSGD(param_groups(AlexNet(cfg, devices=("cpu", "meta")), cfg), lr=cfg.lr)
    schedule = make_schedule(cfg)
    assert apply(schedule, opt, cfg, 0) == pytest.approx(
        {"conv1.weight": 0.01, "conv1.bias": 0.02, "weight": 0.01, "bias": 0.02})
    assert apply(schedule, opt, cfg, epochs - 1) == pytest.approx(
        {"conv1.weight": 0.0, "conv1.bias": 0.0, "weight": 1e-5, "bias": 0.02})


def test_one_epoch_cuda_convnet_run_logs_the_initial_rates(tiny_cache, tmp_path, capsys):
    code = train.main(train_argv(tiny_cache, tmp_path / "r", "--profile", "cuda-convnet", "--epochs", "1",
                                 "--train-batches", "1", "--keep", "1"))
    assert code == 0, capsys.readouterr().err
    log = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    want = {"conv1.weight": 0.01, "conv1.bias": 0.02, "weight": 0.01, "bias": 0.02}
    assert log[0]["lr"] == pytest.approx(want)


# ---------- checkpoints ----------

def test_checkpoint_epochs_spaces_the_checkpoints(tiny_cache, tmp_path, capsys):
    """--checkpoint-epochs 2 over 3 epochs: checkpoints after epochs 2 and 3 (the last) only,
    and the log of every epoch."""
    args = ("--epochs", "3", "--train-batches", "1", "--keep", "5")
    assert train.main(train_argv(tiny_cache, tmp_path / "spaced", *args, "--checkpoint-epochs", "2")) == 0
    assert [checkpoint.epoch_of(p) for p in checkpoint.files(tmp_path / "spaced")] == [2, 3]
    # one batch an epoch
    assert [checkpoint.step_of(p) for p in checkpoint.files(tmp_path / "spaced")] == [2, 3]
    assert len((tmp_path / "spaced" / "log.jsonl").read_text().splitlines()) == 3
    assert exit_status(train.main, train_argv(tiny_cache, tmp_path / "x", *args,
                                              "--checkpoint-epochs", "0")) == 2
    capsys.readouterr()


@pytest.mark.slow  # a second 3-epoch run: about 10 s
def test_checkpoint_epochs_leaves_the_training_alone(tiny_cache, tmp_path):
    args = ("--epochs", "3", "--train-batches", "1", "--keep", "5")
    for n in ("1", "2"):
        assert train.main(train_argv(tiny_cache, tmp_path / n, *args, "--checkpoint-epochs", n)) == 0
    a, b = (checkpoint.latest(tmp_path / n)[1]["model"] for n in ("1", "2"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_truncated_checkpoint_is_skipped(tmp_path):
    for step in (1, 2):
        weights = {"w": torch.full((1000,), float(step))}
        checkpoint.save(tmp_path, {"model": weights, "epoch": 0, "step": step})
    newest = sorted(tmp_path.glob("ckpt-*.pt"))[-1]
    newest.write_bytes(newest.read_bytes()[:200])
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        path, ck = checkpoint.latest(tmp_path)
    assert ck["step"] == 1 and path.name.endswith("s000000001.pt")


def test_keep_last_k(tmp_path):
    for step in range(5):
        checkpoint.save(tmp_path, {"model": {}, "epoch": 0, "step": step}, keep=2)
    assert [p.name for p in sorted(tmp_path.glob("ckpt-*.pt"))] == [
        "ckpt-e0000-s000000003.pt", "ckpt-e0000-s000000004.pt"]
    assert not list(tmp_path.glob("*.tmp"))


# ---------- training ----------

def test_train_step_is_one_paper_sgd_step():
    """train_step = forward, cross-entropy, backward, PaperSGD; its numbers are the
    batch's summed loss and top-1/top-5 misses."""
    torch.manual_seed(0)
    net = torch.nn.Linear(6, 7)
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 3, 4])
    ref = torch.nn.Linear(6, 7)
    ref.load_state_dict(net.state_dict())
    stats = train_step(net, PaperSGD(net.parameters(), lr=0.1), x, y)
    logits = ref(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    PaperSGD(ref.parameters(), lr=0.1).step()
    for a, b in zip(net.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    wrong1 = int((logits.argmax(1) != y).sum())
    wrong5 = int((~(logits.topk(5, 1).indices == y[:, None]).any(1)).sum())
    assert stats.tolist() == pytest.approx([loss.item() * 5, wrong1, wrong5, 5])


def test_a_finished_run_trained_longer_is_the_longer_run(tiny_cache, tmp_path, capsys):
    """A 1-epoch run, then the same command with --epochs 2: bit for bit the 2-epoch run."""
    args = lambda d, epochs: train_argv(tiny_cache, tmp_path / d, "--epochs", str(epochs),  # noqa: E731
                                        "--train-batches", "2", "--keep", "1")
    assert train.main(args("longer", 1)) == 0 and final_weights(tmp_path / "longer")["epoch"] == 1
    capsys.readouterr()
    assert train.main(args("longer", 2)) == 0
    assert "a run of 1 epochs, trained on to 2" in capsys.readouterr().err
    assert train.main(args("whole", 2)) == 0
    got, whole = final_weights(tmp_path / "longer"), final_weights(tmp_path / "whole")
    assert got["step"] == whole["step"] == 4
    for k, v in whole["model"].items():
        assert torch.equal(v, got["model"][k]), k
    assert [h["val_top1"] for h in got["history"]] == [h["val_top1"] for h in whole["history"]]
    # what run_all reads to call it done
    recorded = json.loads((tmp_path / "longer" / "config.json").read_text())
    assert recorded["config"]["epochs"] == 2 and recorded["trained_longer"][0]["from_epochs"] == 1


def test_only_a_length_neutral_schedule_lets_a_run_train_on():
    paper = lambda e: AlexNetConfig.from_profile("paper", num_classes=10, epochs=e)  # noqa: E731
    cc = lambda e: AlexNetConfig.from_profile("cuda-convnet", num_classes=10, epochs=e)  # noqa: E731
    assert same_course(paper(10), paper(14), 10)  # patience 2 epochs (the floor) at both lengths
    assert not same_course(paper(10), paper(90), 10)  # 2 against 5
    assert same_course(cc(10), cc(14), 3)  # its first ε division: after epoch 3 at 10 epochs, 4 at 14
    assert not same_course(cc(10), cc(14), 4)
    assert not same_course(paper(10), cc(10), 1)


@pytest.mark.slow
def test_kill_and_resume_many_trials(tiny_cache, tmp_path, reference_run):
    """SIGKILL after a random checkpoint plus a random delay, 8 times; the default
    suite's test_ctrl_c_then_a_kill_and_each_resume_is_exact does it once."""
    seed = int(os.environ.get("KILL_SEED", "0"))
    print(f"kill-and-resume trials: seed {seed} (replay with KILL_SEED={seed})")
    rng = random.Random(seed)
    for t in range(8):
        d = tmp_path / f"trial{t}"
        cmd = train_cmd(tiny_cache, d, *REFERENCE_ARGS)
        target = rng.choice([3, 6, 9])  # kill after this checkpoint, plus a random delay
        kill_after_checkpoint(cmd, d, target, rng.uniform(0, 1.0))
        r = run(cmd)
        assert r.returncode == 0, r.stderr
        assert_same_run(final_weights(d), ref=reference_run, what=f"trial {t} (kill after step ≥{target})")


def test_nonfinite_loss_stops_with_last_good_checkpoint(tiny_cache, tmp_path, capsys):
    """ε = 1e6: step 1's loss (at the initial weights) is finite and is checkpointed;
    a later step's is not. The run stops with exit 3 naming that checkpoint, and
    no checkpoint holds a non-finite weight."""
    code = train.main(train_argv(tiny_cache, tmp_path / "nan", "--epochs", "1", "--lr", "1e6",
                                 "--checkpoint-steps", "1"))
    err = capsys.readouterr().err
    assert code == 3, err
    assert "loss is nan" in err.lower() or "loss is inf" in err.lower()
    # what led up to it, to tell a climbing loss from a sudden jump, and bad input from bad arithmetic
    assert re.search(r"the steps before \(step loss\): 1 \d+\.\d{3}", err), err
    assert "that step's input batch: finite, from -" in err
    path, ck = checkpoint.latest(tmp_path / "nan")
    assert ck is not None and ck["step"] >= 1
    assert f"Last good checkpoint: {path}" in err
    assert all(torch.isfinite(v).all() for p in checkpoint.files(tmp_path / "nan")
               for v in checkpoint.load(p)["model"].values())


@pytest.mark.parametrize("bad", [["--epochs", "-1"], ["--batch-size", "0"], ["--crop-size", "200"],
                                 ["--profile", "caffe"], ["--devices", "cuda:9"]])
def test_bad_arguments_exit_2_and_write_nothing(tiny_cache, tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as e:
        train.main(train_argv(tiny_cache, tmp_path / "bad", *bad))
    assert e.value.code == 2, bad
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # not even the run directory


def train_here(capsys, *argv) -> tuple[int, str]:
    """`python -m alexnet.train` in this process: exit status (SystemExit's too) and stderr."""
    try:
        code = train.main(list(argv))
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def fast_mode_run(tiny_cache, run_dir, capsys, *extra):
    code, err = train_here(capsys, *train_argv(tiny_cache, run_dir, "--epochs", "1", "--train-batches", "2",
                                                "--fast", *extra))
    assert code == 0, err
    label = "fast (bf16 autocast, channels-last" + ("" if "--no-compile" in extra else ", torch.compile")
    assert f"mode: {label}" in err
    _, ck = checkpoint.latest(run_dir)
    assert ck["fast"] is True and "NOT bit-faithful" in ck["mode"]
    assert all("NOT bit-faithful" in h["mode"] for h in ck["history"]) and ck["history"]
    assert "NOT bit-faithful" in json.loads((run_dir / "config.json").read_text())["mode"]
    assert all(torch.isfinite(v).all() for v in ck["model"].values())
    return ck


def test_fast_mode_is_labelled_and_not_mixed_with_faithful(tiny_cache, tmp_path, capsys):
    fast_mode_run(tiny_cache, tmp_path / "fast", capsys, "--no-compile")
    code, err = train_here(capsys, *train_argv(tiny_cache, tmp_path / "fast",
                                               "--epochs", "2", "--train-batches", "2"))
    assert code == 2 and "--fast" in err  # a fast run is not resumed as a faithful one
    code, err = train_here(capsys, *train_argv(tiny_cache, tmp_path / "faithful", "--epochs", "1",
                                                "--train-batches", "2"))
    assert code == 0 and "mode: faithful (float32, TF32 off)" in err
    _, ck = checkpoint.latest(tmp_path / "faithful")
    assert ck["fast"] is False and ck["history"][0]["mode"] == "faithful (float32, TF32 off)"


@pytest.mark.slow
def test_fast_mode_with_torch_compile(tiny_cache, tmp_path, capsys):
    fast_mode_run(tiny_cache, tmp_path / "compiled", capsys)


def test_fast_forward_stays_close_to_faithful():
    """bf16 autocast + channels-last computes the same net, to bf16 precision."""
    from alexnet.speed import Speed
    torch.manual_seed(0)
    model = AlexNet(AlexNetConfig.from_profile("paper", num_classes=10), devices="cpu").eval()
    x = torch.randn(2, 3, 224, 224) * 50
    ref = model(x)
    fast = Speed(fast=True, compile=False)
    with fast.autocast(torch.device("cpu")):
        out = fast.forward_fn(model)(fast.inputs(x)).float()
    assert model.towers[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(out, ref)  # really another arithmetic
    torch.testing.assert_close(out, ref, rtol=0.05, atol=0.05 * ref.abs().max().item())


# ---------- evaluation ----------

def test_ten_patch_evaluation_matches_brute_force(tiny_cache):
    cache = Cache(tiny_cache)
    torch.manual_seed(0)
    model = AlexNet(AlexNetConfig.from_profile("paper", num_classes=4), devices="cpu").eval()
    loader = Loader(cache, "val", model.config, train=False,
                    views="ten", batch_size=5, workers=0, device="cpu")
    probs, labels = predict(model, loader)
    mean = torch.as_tensor(cache.mean, dtype=torch.float32)
    for i in (0, 7, 15):
        img = torch.as_tensor(np.array(Image.open(io.BytesIO(cache.read("val", i))).convert("RGB"))
                              ).permute(2, 0, 1).float() - mean
        views = []
        for t, l in ((0, 0), (0, 32), (32, 0), (32, 32), (16, 16)):  # corners and centre
            patch = img[:, t:t + 224, l:l + 224]
            views += [patch, patch.flip(-1)]
        with torch.no_grad():
            p = torch.stack([torch.softmax(model(v[None]), 1)[0] for v in views]).mean(0)
        torch.testing.assert_close(probs[i], p, rtol=1e-4, atol=1e-6)
    assert torch.equal(labels, torch.as_tensor(cache.labels("val")))


def test_ensemble_is_mean_softmax(tiny_cache, tmp_path):
    cache = Cache(tiny_cache)
    paths, single = [], []
    for seed in (1, 2):
        torch.manual_seed(seed)
        cfg = AlexNetConfig.from_profile("paper", num_classes=4, seed=seed)
        model = AlexNet(cfg, devices="cpu")
        run_dir = tmp_path / f"m{seed}"
        run_dir.mkdir()
        checkpoint.save(run_dir, {"model": model.state_dict(), "config": cfg.to_dict(),
                                  "epoch": 1, "step": 1})
        paths.append(run_dir)
        loader = Loader(cache, "val", cfg, train=False, views="center", batch_size=8, workers=0, device="cpu")
        single.append(predict(model.eval(), loader)[0])
    res, probs = evaluate(cache, paths, "val", views=("center",), devices="cpu", batch_size=8, workers=0)
    torch.testing.assert_close(probs["center"], (single[0] + single[1]) / 2)
    labels = torch.as_tensor(cache.labels("val"))
    mean = (single[0] + single[1]) / 2
    wrong = "".join("1" if p != y else "0" for p, y in zip(mean.argmax(1).tolist(), labels.tolist()))
    # the ensemble's errors, and its top-1 per image in the split's order (what claims pair)
    assert res["ensemble"]["center"] == {**errors(mean, labels), "wrong": wrong}
    assert wrong.count("1") / len(labels) == res["ensemble"]["center"]["top1"]


FAITHFUL_BACKEND = {"matmul_tf32": False, "cudnn_tf32": False, "cudnn_benchmark": False,
                    "cudnn_deterministic": True}


def set_backend(matmul_tf32=True, cudnn_tf32=True, cudnn_benchmark=True, cudnn_deterministic=False):
    """The backend switches; by default torch's where they differ from faithful mode (cuDNN in TF32),
    and autotuning on."""
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul_tf32, cudnn_tf32
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn_benchmark, cudnn_deterministic


def backend() -> dict:
    """The switches as torch holds them (what alexnet.speed.backend should report)."""
    return {"matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32, "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic}


@pytest.fixture
def wrong_backend():
    """set_backend() for the test, and the switches as they were after it."""
    was = backend()
    set_backend()
    yield set_backend
    set_backend(**was)


def test_speed_setup_sets_each_modes_backend_switches(wrong_backend):
    """Faithful: TF32 off for matmuls and cuDNN, cuDNN deterministic and not autotuned, so a run and
    its resume pick the same algorithms (before: autotuned, said to be "among exact algorithms", and
    set only where a device was a GPU). Fast: TF32 and autotuning."""
    from alexnet.speed import Speed
    from alexnet.speed import backend as reported
    assert Speed().setup() == reported() == backend() == FAITHFUL_BACKEND
    assert Speed(fast=True).setup() == {"matmul_tf32": True, "cudnn_tf32": True, "cudnn_benchmark": True,
                                        "cudnn_deterministic": False}


def test_evaluation_runs_in_faithful_mode_and_records_it(tiny_cache, tmp_path, monkeypatch, wrong_backend):
    """engine.evaluate and load_model (evaluate, predict, export, run_all) set the faithful mode's
    backend switches, as training does, and the result records them. Before, evaluation ran in
    torch's defaults, cuDNN in TF32 while labelled "TF32 off"."""
    from alexnet import engine
    cfg = AlexNetConfig.from_profile("paper", num_classes=4)
    torch.manual_seed(0)
    checkpoint.save(tmp_path, {"model": AlexNet(cfg, devices="cpu").state_dict(), "config": cfg.to_dict(),
                               "epoch": 1, "step": 1})
    seen = []
    plain = engine.predict
    monkeypatch.setattr(engine, "predict", lambda m, loader: (seen.append(backend()), plain(m, loader))[1])
    res, _ = evaluate(Cache(tiny_cache), [tmp_path], "val", views=("center",), devices="cpu", batch_size=8,
                      workers=0)
    assert seen == [FAITHFUL_BACKEND] and res["backend"] == FAITHFUL_BACKEND
    wrong_backend()
    engine.load_model(tmp_path, "cpu")
    assert backend() == FAITHFUL_BACKEND


def test_bench_steps_run_in_their_modes_switches(wrong_backend):
    """tools.bench's fast step in fast mode's switches (before: in the faithful ones it inherited)."""
    from tools.bench import our_step
    our_step("cpu", 1, num_classes=4)
    assert backend() == FAITHFUL_BACKEND
    our_step("cpu", 1, fast=True, compile=False, num_classes=4)
    assert backend()["matmul_tf32"] and backend()["cudnn_tf32"] and backend()["cudnn_benchmark"]


def test_features_file_holds_every_row_in_order(tiny_cache, tmp_path):
    """evaluate --features: an .npy written batch by batch equals the features computed at once."""
    from alexnet.evaluate import save_features
    cache = Cache(tiny_cache)
    torch.manual_seed(3)
    cfg = AlexNetConfig.from_profile("paper", num_classes=4, seed=3)
    model = AlexNet(cfg, devices="cpu")
    checkpoint.save(tmp_path, {"model": model.state_dict(), "config": cfg.to_dict(), "epoch": 1, "step": 1})
    shape = save_features(cache, tmp_path, tmp_path / "f.npy",
                          "train", devices="cpu", batch_size=5, workers=0)
    got, meta = np.load(tmp_path / "f.npy", mmap_mode="r"), np.load(tmp_path / "f.meta.npz")
    assert shape == got.shape == (cache.size("train"), 4096) and not (tmp_path / "f.npy.tmp").exists()
    # At the writer's batch size, so the same kernels sum in the same order: equal to the bit. (At another
    # batch size a CPU's kernels may block the sums differently: 1.7e-6 apart on an AMD EPYC.)
    loader = Loader(cache, "train", cfg, train=False, views="center", batch_size=5, workers=0, device="cpu")
    with torch.no_grad():
        want = torch.cat([model.eval().features(x) for x, _ in loader]).numpy()
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(meta["labels"], cache.labels("train"))
    assert list(meta["names"]) == list(cache.names("train"))


# ---------- several processes ----------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# README, "Several machines": without it, torchrun's restarts hang (pytorch/pytorch#135712: the nodes'
# restart counts differ, and with them the store keys their processes meet at)
TORCHRUN_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def node_cmd(port: int, run_id: str, restarts: int = 0) -> list[str]:
    """One node of a two-node torchrun job (one process, gloo) rendezvousing on 127.0.0.1 (c10d)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", run_id,
            "--max-restarts", str(restarts)]


def two_nodes(cache, run_dirs, *extra, until=None, restarts=0,
              exits=None) -> list[subprocess.CompletedProcess]:
    """Both nodes at once. Their output goes to files, not pipes: a node blocked on a full pipe
    while the test waits on the other would stall both (they wait for each other). `until`: a
    function called with the nodes' processes once they run (to signal them, say). `exits`: a folder
    where node i's training process writes its exit status, to node<i> (tests/exit_status.py)."""
    port, run_id = free_port(), f"test-{random.Random().randint(0, 10**9)}"
    outs = [(tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")) for _ in run_dirs]
    train = [train_cmd(cache, d, *extra)[1:] if exits is None else
             ["-m", "tests.exit_status", str(Path(exits) / f"node{i}"), *train_argv(cache, d, *extra)]
             for i, d in enumerate(run_dirs)]
    nodes = [subprocess.Popen(node_cmd(port, run_id, restarts) + cmd, cwd=ROOT,
                              env={**ENV, **TORCHRUN_ENV}, stdout=out, stderr=err, text=True)
             for cmd, (out, err) in zip(train, outs)]
    if until:
        until(nodes)
    done = []
    for p, files in zip(nodes, outs):
        code = p.wait(timeout=300)
        for f in files:
            f.seek(0)
        done.append(subprocess.CompletedProcess(p.args, code, *(f.read() for f in files)))
        for f in files:
            f.close()
    return done


def test_two_nodes_train_as_one_process_and_refuse_run_dirs_they_do_not_share(tiny_cache, tmp_path):
    """The README's several-machines command, as two torchrun "nodes" on 127.0.0.1 (c10d rendezvous, 1 gloo
    process each): 2 epochs with a global batch of 8 (2 × 4) take the steps of one process with batch 8,
    and --log-steps writes a line for each (it crashed). Dropout is off (each process draws its own
    masks, alexnet/distributed.py). Float32 sums the gradient in another order (measured: 1.3e-3 of the
    update after 2 steps at ε 0.001; 4e-5 after one), so the weights are compared relative to the
    update, plus two units in the last place of the weight (a bias of 1 moved by 3e-6 is 25 of float32's
    steps there, so one rounding is 2–4% of its update: seen once on an AMD EPYC): a rank that saw the
    wrong rows, or gradients not averaged, would miss by about 100% of it. The logged training loss is
    the global batch's, as in one process.
    Then node 1 is given an empty run directory: both nodes must stop before training with one line
    saying the run directory must be shared (they used to resume different models)."""
    common = ("--epochs", "2", "--train-batches", "1", "--checkpoint-epochs", "2", "--dropout", "0",
              "--devices", "cpu", "--batch-size", "8", "--lr", "0.001")
    assert train.main(train_argv(tiny_cache, tmp_path / "one", *common)) == 0  # in this process: no start-up
    shared = tmp_path / "shared"
    for node in two_nodes(tiny_cache, [shared, shared], *common, "--log-steps"):  # it crashed at step 1
        assert node.returncode == 0, node.stderr[-3000:]
    assert [s["step"] for s in read_steps(shared / "steps.jsonl")] == [1, 2]  # rank 0's, one line a step
    a, b = final_weights(tmp_path / "one"), final_weights(shared)
    assert a["step"] == b["step"] == 2
    cfg = AlexNetConfig.from_dict(a["config"])
    torch.manual_seed(cfg.seed)
    init = AlexNet(cfg, devices="cpu").state_dict()
    for k, w in a["model"].items():
        update = (w - init[k]).abs().max()
        assert update > 0, k
        ulp = torch.finfo(w.dtype).eps * w.abs().max()
        assert (b["model"][k] - w).abs().max() < 1e-2 * update + 2 * ulp, k
    assert [h["world_size"] for h in b["history"]] == [2, 2]
    for h1, h2 in zip(a["history"], b["history"]):
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-3)
        assert h2["train_top1"] == h1["train_top1"] and h2["val_top1"] == h1["val_top1"]

    before = sorted(p.name for p in shared.iterdir())
    nodes = two_nodes(tiny_cache, [shared, tmp_path / "empty"], *common, "--epochs", "3")
    for node in nodes:
        assert node.returncode != 0
        lines = [line for line in node.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, node.stderr[-3000:]
        assert "different checkpoints" in lines[0] and "must see the same --run-dir" in lines[0]
        assert all(s in lines[0] for s in ("step 2", "no checkpoint in", "node 0", "node 1"))
    assert sorted(p.name for p in shared.iterdir()) == before  # nothing trained, nothing written
    assert not (tmp_path / "empty").exists() or not any(checkpoint.files(tmp_path / "empty"))


@pytest.fixture()
def as_rank(tiny_cache, tmp_path, monkeypatch):
    """Train in this process as rank r of 2 (a one-process gloo group stands for the other rank, so
    each collective returns this rank's own numbers): the options, and a function (rank, scenario) →
    how many steps the rank took before it stopped or raised. `scenario` patches the step."""
    import torch.distributed as torch_dist

    from alexnet import distributed, engine
    monkeypatch.setattr(distributed, "agree_on_start", lambda *a: None)  # the group holds one process
    real_step = engine.train_step

    def steps_of(rank, scenario, **options):
        taken = []

        def step(*args, **kw):
            taken.append(1)
            return scenario(len(taken), engine.Trainer.current, real_step(*args, **kw))
        monkeypatch.setattr(engine, "train_step", step)
        monkeypatch.setattr(engine.Trainer, "current", None, raising=False)
        init = engine.Trainer.__init__

        def remember(self, *a, **kw):
            init(self, *a, **kw)
            engine.Trainer.current = self
        monkeypatch.setattr(engine.Trainer, "__init__", remember)
        store = torch_dist.FileStore(str(tmp_path / f"store-{rank}-{scenario.__name__}"), 1)
        torch_dist.init_process_group("gloo", store=store, rank=0, world_size=1)
        cfg = AlexNetConfig.from_profile("paper", num_classes=4, batch_size=4, epochs=1)
        opts = engine.TrainOptions(cache=tiny_cache, run_dir=tmp_path / f"rank{rank}-{scenario.__name__}",
                                   devices=("cpu", "cpu"), workers=0, progress=False, **options)
        try:
            engine.fit(cfg, opts, dist=distributed.Dist(rank, 2, rank, 2))
        except engine.NonFiniteLoss:
            pass
        finally:
            distributed.shutdown()
        return len(taken)
    return steps_of


def _nan_at_step_2(k, trainer, stats):
    """Step 2's loss is NaN; rank 1's clock says a checkpoint is overdue (rank 0's does not)."""
    trainer.checkpoint_overdue = lambda: trainer.dist.rank == 1
    if k == 2:
        stats[0] = float("nan")
    return stats


def _signal_at_step_1(k, trainer, stats):
    """A SIGTERM during step 1 (on every rank: the all-reduce would carry one rank's to all)."""
    if k == 1:
        trainer.stop_signal = signal.SIGTERM
    return stats


@pytest.mark.parametrize("scenario, options",
                         [(_nan_at_step_2, {}), (_signal_at_step_1, {"log_steps": True})],
                         ids=["nonfinite-with-one-rank-due", "signal-with-log-steps"])
def test_every_rank_stops_after_the_same_step(as_rank, scenario, options):
    """Ranks decide to read a step's numbers, checkpoint and stop from numbers every rank has (a rank
    that decides a step earlier leaves the others in a collective: rank 0 then reported a lost rank).
    Before: a checkpoint due by one rank's own clock made it read step 2's NaN, and raise, a step
    before the others; under --log-steps rank 0 alone read each step at once, and stopped a step
    before the others after a signal."""
    assert as_rank(0, scenario, **options) == as_rank(1, scenario, **options)


PREEMPTED = ("--epochs", "2", "--train-batches", "3", "--checkpoint-steps", "1", "--keep", "2",
             "--devices", "cpu", "--batch-size", "8")  # 6 steps, with dropout


@pytest.fixture(scope="module")
def two_node_reference(tiny_cache, tmp_path_factory) -> dict:
    """The final checkpoint of an uninterrupted two-node run of PREEMPTED's 6 steps."""
    ref = tmp_path_factory.mktemp("two-nodes") / "uninterrupted"
    for node in two_nodes(tiny_cache, [ref, ref], *PREEMPTED):
        assert node.returncode == 0, node.stderr[-3000:]
    return final_weights(ref)


@pytest.mark.slow  # two two-node runs (and once the reference): 30–60 s each on 2 cores
@pytest.mark.parametrize("signalled", [(0, 1), (0,)], ids=["every-node", "one-node"])
def test_a_preempted_two_node_run_continues_bit_for_bit(signalled, tiny_cache, tmp_path, two_node_reference):
    """SLURM's preemption: SIGTERM to every node's torchrun agent mid-epoch (or to one: a signal that
    reaches the ranks a step apart). Every rank stops after the same step with exit status 130 (the
    one not signalled too, where it used to be left in a collective the other had left), rank 0
    writes one checkpoint of that step, and the same two commands run again continue the run: the
    final weights equal an uninterrupted two-node run's, bit for bit (they differed in every tensor:
    a resumed rank drew other dropout masks)."""
    run_dir, exits = tmp_path / "preempted", tmp_path / "exits"
    exits.mkdir()
    before = []

    def preempt(nodes):
        assert wait_for(lambda: any(checkpoint.step_of(f) >= 2 for f in checkpoint.files(run_dir))
                        or any(n.poll() is not None for n in nodes))
        before.extend(checkpoint.step_of(f) for f in checkpoint.files(run_dir))
        for i in signalled:
            nodes[i].send_signal(signal.SIGTERM)
    stopped = two_nodes(tiny_cache, [run_dir, run_dir], *PREEMPTED, until=preempt, exits=exits)
    # each node's training process, signalled or not, exits 130 (a signalled agent itself exits 1)
    assert [(exits / f"node{i}").read_text() for i in range(2)] == ["130\n", "130\n"]
    for i, node in enumerate(stopped):
        if i in signalled:
            assert "finishing this step and writing a checkpoint" in node.stderr, node.stderr[-3000:]
        else:  # its agent reports the worker's status: it stopped as asked, not on a lost peer
            assert "exitcode: 130" in node.stderr and "is gone" not in node.stderr, node.stderr[-3000:]
    at = final_weights(run_dir)["step"]
    assert 2 <= at < 6
    # one checkpoint of the step they stopped at, written once (by rank 0), whole; nothing after it
    said = [line for n in stopped for line in n.stderr.splitlines()
            if line.startswith("interrupted; checkpoint")]
    steps = [checkpoint.step_of(f) for f in checkpoint.files(run_dir)]
    assert len(said) == 1 and said[0].split()[2].rstrip(".") == str(checkpoint.latest(run_dir)[0]), said
    assert steps.count(at) == 1 and max(steps) == at >= max(before), (before, steps)
    assert not list(run_dir.glob("*.tmp*"))
    again = two_nodes(tiny_cache, [run_dir, run_dir], *PREEMPTED)
    assert [n.returncode for n in again] == [0, 0], again[0].stderr[-3000:] + again[1].stderr[-3000:]
    assert any(f"(epoch {at // 3}, step {at})" in n.stderr for n in again)  # rank 0 says; the others agree
    assert_same_run(final_weights(run_dir), two_node_reference, "preempted and run again")


def kill_a_worker(run_dir):
    """`until` for two_nodes: SIGKILL node 1's training process (not its agent) once the run has a
    checkpoint of step 2; and a dict that then holds the kill's time ("at") and the process's loader
    processes at the kill ("loaders")."""
    killed = {}

    def until(nodes):
        assert wait_for(lambda: any(checkpoint.step_of(f) >= 2 for f in checkpoint.files(run_dir))
                        or any(n.poll() is not None for n in nodes))
        worker = next(pid for pid in descendants(nodes[1].pid)
                      if b"alexnet.train" in Path(f"/proc/{pid}/cmdline").read_bytes())
        loaders = descendants(worker)  # its loader's forkserver and worker, if it has them
        os.kill(worker, signal.SIGKILL)
        killed.update(at=time.time(), loaders=loaders)
    return until, killed


@pytest.mark.slow  # two two-node runs
def test_a_node_lost_mid_epoch_stops_the_other_and_the_run_resumes_bit_for_bit(tiny_cache, tmp_path,
                                                                               two_node_reference):
    """One node's training process (with a loader worker) is SIGKILLed mid-epoch: the other does
    not hang in its collective but exits at once, naming the rank that is gone; the killed one's
    loader processes go with it; the two commands run again resume from the newest checkpoint (only
    rank 0 writes one, atomically), and the run ends equal to an uninterrupted one, bit for bit
    (the loader's workers give the batches of --workers 0)."""
    run_dir = tmp_path / "lost"
    until, killed = kill_a_worker(run_dir)
    lost = two_nodes(tiny_cache, [run_dir, run_dir], *PREEMPTED, "--workers", "1", until=until)
    ended = time.time()
    assert all(n.returncode != 0 for n in lost) and ended - killed["at"] < 60, ended - killed["at"]
    assert len(killed["loaders"]) >= 2 and not any(alive(q) for q in killed["loaders"])  # nothing left behind
    said = [line for line in lost[0].stderr.splitlines() if "error: rank" in line]
    assert said and re.search(r"rank \d at 127\.0\.0\.1:\d+ is gone", said[0]), lost[0].stderr[-3000:]
    again = two_nodes(tiny_cache, [run_dir, run_dir], *PREEMPTED)
    assert [n.returncode for n in again] == [0, 0], again[0].stderr[-3000:] + again[1].stderr[-3000:]
    assert_same_run(final_weights(run_dir), two_node_reference, "a node lost, then run again")


@pytest.mark.slow  # a two-node run restarted once
def test_torchrun_restarts_the_group_and_the_run_ends_bit_for_bit(tiny_cache, tmp_path, two_node_reference):
    """torchrun --max-restarts 1: the same SIGKILL makes torchrun restart both nodes' processes by
    itself; they resume from the newest checkpoint and the run ends equal to an uninterrupted one."""
    run_dir = tmp_path / "restarted"
    until, _ = kill_a_worker(run_dir)
    done = two_nodes(tiny_cache, [run_dir, run_dir], *PREEMPTED, until=until, restarts=1)
    assert [n.returncode for n in done] == [0, 0], done[0].stderr[-3000:] + done[1].stderr[-3000:]
    assert any("resumed from" in n.stderr for n in done)
    assert_same_run(final_weights(run_dir), two_node_reference, "restarted by torchrun")


_MASKS = """
import json, sys, torch, torch.distributed as dist
from alexnet import distributed
from alexnet.config import AlexNetConfig
from alexnet.engine import Trainer, TrainOptions
d, devices = distributed.init("cpu")
cfg = AlexNetConfig.from_profile("paper", num_classes=4, batch_size=8)
opts = TrainOptions(cache=sys.argv[1], run_dir=sys.argv[2], devices=devices, workers=0)
trainer = Trainer(cfg, opts, dist=d)
trainer.net.train()
mask = trainer.net.towers[0].drop6(torch.ones(1, 256)).ne(0).int().tolist()[0]
weights = trainer.net.towers[0].conv1.weight.flatten()[:8].tolist()
out = [None, None]
dist.all_gather_object(out, {"mask": mask, "weights": weights})
if d.main:
    open(sys.argv[3], "w").write(json.dumps(out))
distributed.shutdown()
"""


@pytest.mark.slow  # two processes, each building the model: about 20 s (CI time)
def test_torchrun_replicas_draw_their_own_dropout_masks(tiny_cache, tmp_path):
    """Two gloo processes: the same initial weights, different dropout masks."""
    script, out = tmp_path / "masks.py", tmp_path / "masks.json"
    script.write_text(_MASKS)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
                str(29500 + random.Random().randint(0, 999))]
    r = subprocess.run(torchrun + [str(script), str(tiny_cache), str(tmp_path / "run"), str(out)], cwd=ROOT,
                       env={**ENV, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = json.loads(out.read_text())
    assert a["weights"] == b["weights"]  # one model, replicated
    assert a["mask"] != b["mask"]  # each replica its own draws
    assert 0.3 < sum(a["mask"]) / len(a["mask"]) < 0.7 and 0.3 < sum(b["mask"]) / len(b["mask"]) < 0.7


def tiny_trainer(cache, run_dir, dist=None, **opts):
    """A Trainer in this process, both towers on the CPU, without loader processes."""
    from alexnet.engine import Trainer, TrainOptions
    cfg = AlexNetConfig.from_profile("paper", num_classes=4, batch_size=8)
    return Trainer(cfg, TrainOptions(cache=cache, run_dir=run_dir, devices=("cpu", "cpu"), workers=0,
                                     progress=False, **opts), dist=dist)


def step_masks(trainer, step: int) -> dict[str, torch.Tensor]:
    """The dropout masks the trainer's towers draw at `step`, in the model's order (drop6 of tower 0,
    of tower 1, then drop7), each on 8 × 2048 ones."""
    trainer.step = step
    trainer.seed_dropout()
    trainer.net.train()
    ones = torch.ones(8, 2048)
    return {f"t{i}.{d}": getattr(t, d)(ones).ne(0) for d in ("drop6", "drop7")
            for i, t in enumerate(trainer.net.towers)}


def test_each_tower_draws_its_own_dropout_masks_from_seed_tower_rank_step(tiny_cache, tmp_path):
    """§4.2 on two GPUs: each tower's masks come from its own generator, seeded from (seed, tower,
    rank, step). Before, both towers drew from the global generator, which torch.manual_seed seeds
    alike on every GPU: on cuda:0 and cuda:1 the towers dropped the same units. Here both towers are
    on the CPU and still draw from two generators: tower 1's mask is neither tower 0's nor what one
    shared stream would give after tower 0's draw; and the masks are the same after a resume."""
    trainer = tiny_trainer(tiny_cache, tmp_path / "a")
    trainer.net.train()
    ones = torch.ones(8, 2048)
    torch.manual_seed(9)
    t0, t1 = (t.drop6(ones).ne(0) for t in trainer.net.towers)
    torch.manual_seed(9)
    stream = [torch.empty_like(ones).bernoulli_(0.5).ne(0) for _ in range(2)]  # one stream, drawn twice
    assert not torch.equal(t0, stream[0]) and not torch.equal(t1, stream[1])  # not the global stream's
    from alexnet.data.loader import seed_of
    from alexnet.engine import DROPOUT_STREAM
    from alexnet.layers import keep_mask
    gens = trainer.dropout_generators
    assert len(gens) == 2 and gens[0] is not gens[1]
    assert all(t.drop6.generator is g and t.drop7.generator is g for t, g in zip(trainer.net.towers, gens))
    m = step_masks(trainer, 5)
    assert not torch.equal(m["t0.drop6"], m["t1.drop6"]) and not torch.equal(m["t0.drop7"], m["t1.drop7"])
    for tower in (0, 1):  # a function of (seed, tower, rank, step) alone
        g = torch.Generator().manual_seed(seed_of(trainer.cfg.seed, DROPOUT_STREAM, tower, 0, 5))
        assert torch.equal(m[f"t{tower}.drop6"], keep_mask(ones, 0.5, g).bool())
        assert torch.equal(m[f"t{tower}.drop7"], keep_mask(ones, 0.5, g).bool())
    shared = torch.Generator().manual_seed(seed_of(trainer.cfg.seed, DROPOUT_STREAM, 0, 0, 5))
    keep_mask(ones, 0.5, shared)
    assert not torch.equal(m["t1.drop6"], keep_mask(ones, 0.5, shared).bool())  # not one stream's next draw
    for mask in m.values():
        assert 0.45 < mask.float().mean() < 0.55
    assert not torch.equal(step_masks(trainer, 6)["t0.drop6"], m["t0.drop6"])  # another step, other masks
    torch.manual_seed(123)  # another global RNG state, another process: the same masks at step 5
    again = step_masks(tiny_trainer(tiny_cache, tmp_path / "b"), 5)
    assert all(torch.equal(again[k], m[k]) for k in m)
    other_rank = step_masks(tiny_trainer(tiny_cache, tmp_path / "c", dist=distributed.Dist(rank=1)), 5)
    assert not any(torch.equal(other_rank[k], m[k]) for k in m)


_DDP_FAST = """
import sys, warnings, torch, torch.distributed as dist
from alexnet import distributed
from alexnet.config import AlexNetConfig
from alexnet.engine import Trainer, TrainOptions, train_step
cache, run_dir, store, device, compiled = sys.argv[1:]
dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", store=dist.FileStore(store, 1),
                        rank=0, world_size=1)
cfg = AlexNetConfig.from_profile("paper", num_classes=4, batch_size=8)
opts = TrainOptions(cache=cache, run_dir=run_dir, devices=(device, device), workers=0, fast=True,
                    compile=compiled == "1", progress=False, resident=False, train_batches=2)
# a Dist of two makes the trainer wrap the net in DDP; the process group itself has one rank
trainer = Trainer(cfg, opts, dist=distributed.Dist(world_size=2))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for x, y in trainer.train_loader:
        stats = train_step(trainer.forward, trainer.opt, x, y, trainer.speed)
assert torch.isfinite(stats).all(), stats
bad = [str(w.message) for w in caught if "strides do not match" in str(w.message)]
assert not bad, bad
dist.destroy_process_group()
print("ok")
"""


def ddp_fast_steps(cache, tmp_path, device: str, compiled: bool = False) -> None:
    """Two fast-mode steps wrapped in DDP, in a process of their own (one rank): finite, and without
    DDP's warning that the gradients' strides do not match its buckets' (before: fast mode turned the
    net channels-last after DDP had built its buckets, so every step copied each gradient)."""
    script = tmp_path / "ddp_fast.py"
    script.write_text(_DDP_FAST)
    argv = [sys.executable, str(script), str(cache), str(tmp_path / "run"), str(tmp_path / "store"), device,
            str(int(compiled))]
    r = subprocess.run(argv, cwd=ROOT, env={**ENV, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


def test_fast_mode_is_channels_last_before_ddp_wraps_the_model(tiny_cache, tmp_path):
    """One gloo process on the CPU."""
    ddp_fast_steps(tiny_cache, tmp_path, "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_fast_mode_under_ddp_on_one_gpu_keeps_the_gradient_strides(tiny_cache, tmp_path, compiled):
    """One NCCL process on cuda:0, eager and under torch.compile (with the dropout draws' graph breaks)."""
    ddp_fast_steps(tiny_cache, tmp_path, "cuda:0", compiled)


@pytest.mark.parametrize("profile", ["paper", "cuda-convnet"])
def test_finetune_schedule_is_the_recorded_2012_2011_run(profile):
    """layer-params-146-2012-2011.cfg: weights 0.001, conv1 0.0001, the new fc8 0.01; conv1 1e-5 at
    epoch 5 and 0 at 7; fc8 0.001 at 9; 1e-4 at 22, 1e-5 at 42; colour noise off at 38."""
    from alexnet.schedule import apply, make_schedule
    cfg = AlexNetConfig.from_profile(profile, epochs=54, lr_schedule="finetune")
    opt = PaperSGD(param_groups(AlexNet(cfg, devices=("cpu", "meta")), cfg), lr=cfg.lr)
    s = make_schedule(cfg)
    b = 0.01 * cfg.bias_lr_mult
    expect = {0: (1e-4, b, 1e-3, 1e-2), 5: (1e-5, b, 1e-3, 1e-2), 7: (0, 0, 1e-3, 1e-2),
              9: (0, 0, 1e-3, 1e-3), 22: (0, 0, 1e-4, 1e-4), 42: (0, 0, 1e-5, 1e-5)}
    for epoch, (c1, c1b, w, fc8) in expect.items():
        assert apply(s, opt, cfg, epoch) == pytest.approx(
            {"conv1.weight": c1, "conv1.bias": c1b, "weight": w, "fc8.weight": fc8, "bias": b}), epoch
    assert s.lighting(37) and not s.lighting(38)


# ---------- on one GPU (tools/gpu_check.sh) ----------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_faithful_evaluation_on_the_gpu_is_float32_without_tf32(tiny_cache, tmp_path, wrong_backend):
    """load_model on a GPU: the faithful switches, and the logits of float32 (TF32 would be ~1e-3 off)."""
    from alexnet.engine import load_model
    cfg = AlexNetConfig.from_profile("paper", num_classes=4)
    torch.manual_seed(0)
    checkpoint.save(tmp_path, {"model": AlexNet(cfg, devices="cpu").state_dict(), "config": cfg.to_dict(),
                               "epoch": 1, "step": 1})
    model, _, _ = load_model(tmp_path, "cuda:0")
    assert backend() == FAITHFUL_BACKEND
    ref = load_model(tmp_path, "cpu")[0].double()
    x = torch.randn(4, 3, 224, 224) * 50
    with torch.no_grad():
        got, want = model(x.cuda()).double().cpu(), ref(x.double())
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_resume_on_the_gpu_is_bit_for_bit(tiny_cache, tmp_path):
    """Faithful mode on one GPU (cuDNN deterministic, dropout per tower and step): 2 steps, a resume,
    2 more, equal to 4 steps uninterrupted, to the bit."""
    from alexnet.engine import TrainOptions, fit
    cfg = AlexNetConfig.from_profile("paper", num_classes=4, batch_size=8, epochs=1)

    def run(run_dir, *stops):
        for s in stops:
            opts = dict(cache=tiny_cache, run_dir=run_dir, devices=("cuda:0", "cuda:0"), workers=0,
                        progress=False, max_steps=s, resident=False)
            assert fit(cfg, TrainOptions(**opts)) == 0
        return checkpoint.latest(run_dir)[1]["model"]

    once, resumed = run(tmp_path / "once", 4), run(tmp_path / "resumed", 2, 4)
    assert all(torch.equal(once[k], resumed[k]) for k in once)
