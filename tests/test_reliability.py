"""Issue 7's fault classes: run locks, Ctrl-C, full disks, corrupt or foreign state,
bad arguments to every CLI, and (slow, by hand) run_all.sh killed anywhere."""

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alexnet import checkpoint
from alexnet.checkpoint import RunLock, RunLocked

from .test_engine import final_weights, run, train_cmd

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def wait_for(pred, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


# ---------- two runs on one directory ----------

def test_run_lock_refuses_a_second_holder(tmp_path):
    with RunLock(tmp_path / "r"):
        with pytest.raises(RunLocked, match="in use by another training run"):
            RunLock(tmp_path / "r").__enter__()
    with RunLock(tmp_path / "r"):  # released on exit
        pass


def test_second_training_process_on_same_run_dir_refuses(tiny_cache, tmp_path):
    d = tmp_path / "run"
    first = subprocess.Popen(train_cmd(tiny_cache, d, "--epochs", "3"), cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: (d / ".lock").exists() and (d / ".lock").read_text().strip())
        second = run(train_cmd(tiny_cache, d, "--epochs", "3"))
        assert second.returncode == 2
        assert "in use by another training run" in second.stderr and str(first.pid) in second.stderr
    finally:
        first.kill()
        first.wait()
    assert not list(d.glob("*.tmp"))


# ---------- Ctrl-C ----------

def test_sigint_writes_a_checkpoint_and_the_resume_is_exact(tiny_cache, tmp_path):
    args = ("--epochs", "2")
    ref = run(train_cmd(tiny_cache, tmp_path / "ref", *args))
    assert ref.returncode == 0, ref.stderr
    d = tmp_path / "int"
    p = subprocess.Popen(train_cmd(tiny_cache, d, *args), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: (d / ".lock").exists())
    time.sleep(4)  # into the first epoch
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Resume with the same command" in err and list(d.glob("ckpt-*.pt"))
    again = run(train_cmd(tiny_cache, d, *args))
    assert again.returncode == 0, again.stderr
    a, b = final_weights(tmp_path / "ref"), final_weights(d)
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())


# ---------- disk full ----------

def limit_file_size(nbytes):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))


def test_disk_full_keeps_the_previous_checkpoint(tmp_path):
    """Checkpoint 1 (small) fits, checkpoint 2 (20 MB) does not: the error says how
    much is needed, checkpoint 1 still loads, no temporary file is left."""
    code = f"""
import torch, sys
from alexnet import checkpoint
d = {str(tmp_path)!r}
checkpoint.save(d, {{"model": {{"w": torch.zeros(10)}}, "epoch": 0, "step": 1}})
try:
    checkpoint.save(d, {{"model": {{"w": torch.zeros(5_000_000)}}, "epoch": 0, "step": 2}})
except checkpoint.DiskFull as e:
    print(e.strerror); sys.exit(4)
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       preexec_fn=limit_file_size(5_000_000))
    assert r.returncode == 4, r.stderr
    assert "no space left" in r.stdout and "needs about 19 MiB" in r.stdout and "is intact" in r.stdout
    path, ck = checkpoint.latest(tmp_path)
    assert ck["step"] == 1 and not list(tmp_path.glob("*.tmp"))


def test_training_on_a_full_disk_stops_with_the_space_needed(tiny_cache, tmp_path):
    r = subprocess.run(train_cmd(tiny_cache, tmp_path / "full", "--epochs", "1", "--checkpoint-steps", "1"),
                       cwd=ROOT, capture_output=True, text=True, env=ENV, preexec_fn=limit_file_size(50_000_000))
    assert r.returncode == 4, r.stderr[-2000:]
    assert "no space left" in r.stderr and "MiB" in r.stderr
    assert not list((tmp_path / "full").glob("*.tmp"))


def test_prepare_on_a_full_disk_says_how_much_is_needed(messy_source, tmp_path):
    r = subprocess.run([sys.executable, "-m", "tools.prepare", "--data", str(messy_source), "--cache",
                        str(tmp_path / "cache"), "--no-progress", "--workers", "1"], cwd=ROOT, capture_output=True,
                       text=True, env=ENV, preexec_fn=limit_file_size(20_000))
    assert r.returncode == 2, r.stderr[-2000:]
    assert "no space left" in r.stderr and "MiB more are needed" in r.stderr
    assert not list((tmp_path / "cache").glob("*.tmp"))


@pytest.fixture()
def messy_source(tmp_path):
    import io

    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / "src" / split / cls).mkdir(parents=True)
            for i in range(4):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(buf, "JPEG")
                (tmp_path / "src" / split / cls / f"{i}.JPEG").write_bytes(buf.getvalue())
    return tmp_path / "src"


# ---------- corrupt or foreign state ----------

def test_checkpoint_from_another_config_is_refused(tiny_cache, tmp_path):
    d = tmp_path / "run"
    r = run(train_cmd(tiny_cache, d, "--epochs", "1", "--max-steps", "1"))
    assert r.returncode == 0, r.stderr
    again = run(train_cmd(tiny_cache, d, "--epochs", "1", "--lr", "0.02"))
    assert again.returncode == 2 and "another config" in again.stderr and "'lr': (0.01, 0.02)" in again.stderr
    path, ck = checkpoint.latest(d)  # a checkpoint of a future version of the code
    ck["config"]["future_field"] = 1
    torch.save(ck, path)
    again = run(train_cmd(tiny_cache, d, "--epochs", "1"))
    assert again.returncode == 2 and "future_field" in again.stderr


# ---------- bad arguments to every CLI ----------

BAD = [
    (["-m", "alexnet.model", "--profile", "caffe"], "--profile"),
    (["-m", "alexnet.model", "--crop-size", "200"], "--crop-size"),
    (["-m", "alexnet.model", "--devices", "cuda:7"], "cuda:7"),
    (["-m", "tools.prepare", "--data", "{tmp}/empty", "--cache", "{tmp}/out"], "expected an ImageFolder"),
    (["-m", "tools.prepare", "--imagenet", "{tmp}/empty", "--cache", "{tmp}/out"], "missing ILSVRC2012"),
    (["-m", "tools.prepare", "--synthetic", "--classes", "1", "--cache", "{tmp}/out"], "--classes"),
    (["-m", "alexnet.train", "--cache", "{cache}", "--run-dir", "{tmp}/out", "--epochs", "-1"], "--epochs"),
    (["-m", "alexnet.train", "--cache", "{cache}", "--run-dir", "{tmp}/out", "--batch-size", "0"], "--batch-size"),
    (["-m", "alexnet.train", "--cache", "{cache}", "--run-dir", "{tmp}/out", "--crop-size", "200"], "--crop-size"),
    (["-m", "alexnet.train", "--cache", "{cache}", "--run-dir", "{tmp}/out", "--profile", "x"], "--profile"),
    (["-m", "alexnet.train", "--cache", "{cache}", "--run-dir", "{tmp}/out", "--devices", "cuda:3"], "cuda:3"),
    (["-m", "alexnet.train", "--cache", "{tmp}/empty", "--run-dir", "{tmp}/out"], "not a prepared cache"),
    (["-m", "alexnet.evaluate", "--cache", "{cache}", "--checkpoint", "{tmp}/none", "--out", "{tmp}/out"], "--checkpoint"),
    (["-m", "alexnet.evaluate", "--cache", "{cache}", "--checkpoint", "{tmp}", "--batch-size", "0",
      "--out", "{tmp}/out"], "--batch-size"),
    (["-m", "alexnet.evaluate", "--cache", "{cache}", "--checkpoint", "{tmp}", "--split", "test",
      "--out", "{tmp}/out"], "--split"),
    (["-m", "alexnet.cifar", "--cache", "{cache}", "--epochs", "0", "--out", "{tmp}/out"], "--epochs"),
    (["-m", "alexnet.report", "--results", "{tmp}/out", "--dataset", "x", "--scale", "huge"], "--scale"),
    (["reproduce/run_all.py", "--epochs", "-3", "--work", "{tmp}/out", "--results", "{tmp}/out"], "--epochs"),
    (["reproduce/run_all.py", "--imagenet", "{tmp}/empty", "--work", "{tmp}/out", "--results", "{tmp}/out"],
     "missing ILSVRC2012"),
]


@pytest.mark.parametrize("argv,names", BAD, ids=[" ".join(a[:2] + a[-2:]) for a, _ in BAD])
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(argv, names, tiny_cache, tmp_path):
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path, cache=tiny_cache) for a in argv]
    r = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 2, (argv, r.stderr[-1000:])
    last = r.stderr.strip().splitlines()[-1]
    assert "error" in last and names in last, last
    assert not (tmp_path / "out").exists()


# ---------- run_all.sh killed anywhere (slow: run by hand) ----------

def run_all_cmd(work):
    return ["bash", "reproduce/run_all.sh", "--scale", "smoke", "--synthetic-size", "3,8,4", "--experiments",
            "1cnn,fig1", "--work", str(work), "--results", str(work / "results")]


def numbers(results: Path) -> list:
    rows = json.loads((results / "tables" / "table2.json").read_text())
    return [(r["model"], r["ours_top1_val"], r["ours_top5_val"]) for r in rows]


def kill_anywhere_trials(tmp_path, trials, seed):
    ref = tmp_path / "ref"
    t0 = time.time()
    r = subprocess.run(run_all_cmd(ref), cwd=ROOT, capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    duration = time.time() - t0
    ref_w = final_weights(ref / "runs" / "synthetic-3x8x4" / "1cnn")["model"]
    rng = random.Random(seed)
    report = []
    for t in range(trials):
        work = tmp_path / f"trial{t}"
        p = subprocess.Popen(run_all_cmd(work), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
        at = rng.uniform(0.5, duration * 0.95)
        time.sleep(at)
        os.killpg(p.pid, signal.SIGKILL)
        out = p.communicate()[0]
        stage = [line for line in out.splitlines() if line.startswith("== ")][-1:] or ["(before stage 1)"]
        r = subprocess.run(run_all_cmd(work), cwd=ROOT, capture_output=True, text=True, env=ENV)
        assert r.returncode == 0, (t, at, stage, r.stdout[-2000:], r.stderr[-2000:])
        got = final_weights(work / "runs" / "synthetic-3x8x4" / "1cnn")["model"]
        assert all(torch.equal(v, got[k]) for k, v in ref_w.items()), (t, at, stage)
        assert numbers(work / "results") == numbers(ref / "results"), (t, at, stage)
        report.append(f"trial {t}: killed at {at:.1f}s in {stage[0]} → restart completed, same weights and tables")
    print("\n".join(report))


@pytest.mark.slow
def test_run_all_killed_anywhere_recovers(tmp_path):
    kill_anywhere_trials(tmp_path, trials=10, seed=int(os.environ.get("KILL_SEED", "0")))
