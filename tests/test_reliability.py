"""Issue 7's fault classes: run locks, Ctrl-C, full disks, corrupt or foreign state,
bad arguments to every CLI, and (slow, by hand) run_all.sh killed anywhere."""

import importlib
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

from alexnet import checkpoint, train
from alexnet.checkpoint import RunLock, RunLocked
from alexnet.data.synthetic import GENERATOR_VERSION

from .conftest import (
    ENV,
    REFERENCE_ARGS,
    REFERENCE_STEPS,
    ROOT,
    assert_same_run,
    final_weights,
    kill_after_checkpoint,
    run,
    train_argv,
    train_cmd,
    wait_for,
)

# ---------- two runs on one directory ----------

def test_run_lock_refuses_a_second_holder(tmp_path):
    with RunLock(tmp_path / "r"):
        with pytest.raises(RunLocked, match="in use by another training run"):
            RunLock(tmp_path / "r").__enter__()
    with RunLock(tmp_path / "r"):  # released on exit
        pass


def test_second_training_process_on_same_run_dir_refuses(tiny_cache, tmp_path, capsys):
    d = tmp_path / "run"
    first = subprocess.Popen(train_cmd(tiny_cache, d, "--epochs", "3"), cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: (d / ".lock").exists() and (d / ".lock").read_text().strip())
        second = train.main(train_argv(tiny_cache, d, "--epochs", "3"))  # in this process
        err = capsys.readouterr().err
        assert second == 2
        assert "in use by another training run" in err and str(first.pid) in err
    finally:
        first.kill()
        first.wait()
    assert not list(d.glob("*.tmp"))


# ---------- Ctrl-C ----------

def test_ctrl_c_then_a_kill_and_each_resume_is_exact(tiny_cache, tmp_path, reference_run):
    """Ctrl-C in epoch 1 writes a checkpoint and exits 130; the same command resumes,
    is killed outright (SIGKILL) after a later checkpoint plus a random delay,
    and resumes again: the end is the uninterrupted run bit for bit. (One random
    kill point; the slow test_kill_and_resume_many_trials tries 8.)"""
    seed = int(os.environ.get("KILL_SEED", time.time()))
    print(f"kill point: seed {seed} (replay with KILL_SEED={seed})")
    rng = random.Random(seed)
    d = tmp_path / "run"
    cmd = train_cmd(tiny_cache, d, *REFERENCE_ARGS)
    p = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: (d / ".lock").exists())
    time.sleep(4)  # into the first epoch
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Resume with the same command" in err
    interrupted = max(checkpoint.step_of(f) for f in checkpoint.files(d))
    target = rng.choice([s for s in (6, 9) if s > interrupted] or [REFERENCE_STEPS])
    kill_after_checkpoint(cmd, d, target, rng.uniform(0, 1.0))
    again = run(cmd)
    assert again.returncode == 0, again.stderr
    assert_same_run(final_weights(d), ref=reference_run,
                    what=f"Ctrl-C at step {interrupted}, kill after step ≥{target}")


# ---------- disk full ----------

def limit_file_size(nbytes):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, theirs, ...), from /proc."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    found, todo = set(), [pid]
    while todo:
        above = todo.pop()
        kids = [p for p, pp in parent.items() if pp == above]
        found.update(kids)
        todo += kids
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_killed_trainer_leaves_no_loader_process_behind(tiny_cache, tmp_path):
    """SIGKILL to a trainer with a loader worker: its forkserver and worker go within seconds (they
    lived on for hours: PyTorch's worker watches its parent, the forkserver, not the trainer)."""
    run_dir = tmp_path / "run"
    cmd = train_cmd(tiny_cache, run_dir, "--epochs", "1", "--checkpoint-steps", "2", "--workers", "1")
    p = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: p.poll() is not None or any(checkpoint.files(run_dir)))
    loaders = descendants(p.pid)
    assert p.poll() is None and len(loaders) >= 2, loaders  # the forkserver and its worker, at least
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert wait_for(lambda: not any(alive(q) for q in loaders), timeout=10), \
        [q for q in loaders if alive(q)]


_ORPHAN = """
import os, sys, time
from pathlib import Path
out = Path(sys.argv[1])
parent = os.getpid()
if os.fork():  # the parent (the trainer, say) ends at once ...
    os._exit(0)
while os.getppid() == parent:  # ... and the child (its forkserver) asks only after that
    time.sleep(0.01)
from alexnet.data.loader import die_with_parent
(out / "pid").write_text(str(os.getpid()))
die_with_parent(parent)
(out / "returned").write_text("no signal will ever come, and the process stays")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_loader_process_whose_parent_died_before_it_asked_ends(tmp_path):
    """die_with_parent is told the parent's pid: a process whose parent ended before it first read its
    parent's pid ends too (it compared two reads of the pid it already had from init, and stayed)."""
    subprocess.run([sys.executable, "-c", _ORPHAN, str(tmp_path)], cwd=ROOT, env=ENV, check=True, timeout=60)
    assert wait_for(lambda: (tmp_path / "pid").exists(), timeout=60)
    pid = int((tmp_path / "pid").read_text())
    assert wait_for(lambda: not alive(pid), timeout=30)
    assert not (tmp_path / "returned").exists()


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
                       cwd=ROOT, capture_output=True, text=True, env=ENV,
                       preexec_fn=limit_file_size(50_000_000))
    assert r.returncode == 4, r.stderr[-2000:]
    assert "no space left" in r.stderr and "MiB" in r.stderr
    assert not list((tmp_path / "full").glob("*.tmp"))


def test_prepare_on_a_full_disk_says_how_much_is_needed(messy_folder, tmp_path):
    r = subprocess.run([sys.executable, "-m", "tools.prepare", "--data", str(messy_folder), "--cache",
                        str(tmp_path / "cache"), "--no-progress", "--workers", "1"], cwd=ROOT,
                       capture_output=True, text=True, env=ENV, preexec_fn=limit_file_size(20_000))
    assert r.returncode == 2, r.stderr[-2000:]
    assert "no space left" in r.stderr and "MiB more are needed" in r.stderr
    assert not list((tmp_path / "cache").glob("*.tmp"))


# ---------- corrupt or foreign state ----------

def exit_status(main, argv) -> int:
    """A CLI's main(argv) in this process: its return value, or the code of the SystemExit it raised."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_checkpoint_from_another_config_is_refused(tiny_cache, tmp_path, capsys):
    d = tmp_path / "run"
    assert exit_status(train.main, train_argv(tiny_cache, d, "--epochs", "1", "--max-steps", "1")) == 0
    capsys.readouterr()
    assert exit_status(train.main, train_argv(tiny_cache, d, "--epochs", "1", "--lr", "0.02")) == 2
    err = capsys.readouterr().err
    assert "another config" in err and "'lr': (0.01, 0.02)" in err
    path, ck = checkpoint.latest(d)  # a checkpoint of a future version of the code
    ck["config"]["future_field"] = 1
    torch.save(ck, path)
    assert exit_status(train.main, train_argv(tiny_cache, d, "--epochs", "1")) == 2
    assert "future_field" in capsys.readouterr().err


# ---------- bad arguments to every CLI ----------

BAD = [  # (module, argv, what the one-line error must name)
    ("alexnet.model", ["--profile", "caffe"], "--profile"),
    ("alexnet.model", ["--crop-size", "200"], "--crop-size"),
    ("alexnet.model", ["--devices", "cuda:7"], "cuda:7"),
    ("tools.prepare", ["--data", "{tmp}/empty", "--cache", "{tmp}/out"], "expected an ImageFolder"),
    ("tools.prepare", ["--imagenet", "{tmp}/empty", "--cache", "{tmp}/out"], "missing ILSVRC2012"),
    ("tools.prepare", ["--synthetic", "--classes", "1", "--cache", "{tmp}/out"], "--classes"),
    ("tools.prepare", ["--synthetic", "--generator", "1", "--cache", "{tmp}/out"], "--generator"),
    ("tools.image_stats", ["{tmp}/empty"], "not a prepared cache"),
    ("alexnet.train", ["--cache", "{cache}", "--run-dir", "{tmp}/out", "--epochs", "-1"], "--epochs"),
    ("alexnet.train", ["--cache", "{cache}", "--run-dir", "{tmp}/out", "--batch-size", "0"], "--batch-size"),
    ("alexnet.train", ["--cache", "{cache}", "--run-dir", "{tmp}/out", "--crop-size", "200"], "--crop-size"),
    ("alexnet.train", ["--cache", "{cache}", "--run-dir", "{tmp}/out", "--profile", "x"], "--profile"),
    ("alexnet.train", ["--cache", "{cache}", "--run-dir", "{tmp}/out", "--devices", "cuda:3"], "cuda:3"),
    ("alexnet.train", ["--cache", "{tmp}/empty", "--run-dir", "{tmp}/out"], "not a prepared cache"),
    ("alexnet.evaluate", ["--cache", "{cache}", "--checkpoint", "{tmp}/none", "--out", "{tmp}/out"],
     "--checkpoint"),
    ("alexnet.evaluate",
     ["--cache", "{cache}", "--checkpoint", "{tmp}", "--batch-size", "0", "--out", "{tmp}/out"],
     "--batch-size"),
    ("alexnet.evaluate",
     ["--cache", "{cache}", "--checkpoint", "{tmp}", "--split", "test", "--out", "{tmp}/out"], "--split"),
    ("reproduce.figure1", ["--cache", "{cache}", "--steps", "0", "--out", "{tmp}/out"], "--steps"),
    ("reproduce.tables", ["--results", "{tmp}/out", "--dataset", "x", "--scale", "huge"], "--scale"),
    ("reproduce.figures", ["--results", "{tmp}/out", "--cache", "{tmp}/empty"], "not a prepared cache"),
    ("reproduce.run_all", ["--epochs", "-3", "--work", "{tmp}/out", "--results", "{tmp}/out"], "--epochs"),
    ("reproduce.run_all", ["--imagenet", "{tmp}/empty", "--work", "{tmp}/out", "--results", "{tmp}/out"],
     "missing ILSVRC2012"),
]


@pytest.mark.parametrize("module,argv,names", BAD, ids=[f"{m} {' '.join(a[-2:])}" for m, a, _ in BAD])
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(module, argv, names, tiny_cache, tmp_path,
                                                              capsys):
    """Each CLI's main(argv), in this process: exit 2, the last line of stderr an
    error naming the bad value, nothing written."""
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path, cache=tiny_cache) for a in argv]
    assert exit_status(importlib.import_module(module).main, argv) == 2, (module, argv)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error" in last and names in last, last
    assert not (tmp_path / "out").exists()


def test_a_cli_really_exits_2_from_the_shell(tmp_path):
    """The in-process checks above call main(argv); this one runs a real process."""
    r = subprocess.run([sys.executable, "-m", "alexnet.train", "--cache", str(tmp_path), "--run-dir",
                        str(tmp_path / "out"), "--epochs", "0"], cwd=ROOT, capture_output=True, text=True,
                       env=ENV)
    assert r.returncode == 2 and "--epochs=0: must be at least 1" in r.stderr.strip().splitlines()[-1]


# ---------- run_all.sh killed anywhere (slow: run by hand) ----------

RUN = Path("runs") / f"synthetic-3x8x4-g{GENERATOR_VERSION}" / "e1-b4-t2" / "1cnn"  # run_all_cmd's 1cnn


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
    ref_w = final_weights(ref / RUN)["model"]
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
        got = final_weights(work / RUN)["model"]
        assert all(torch.equal(v, got[k]) for k, v in ref_w.items()), (t, at, stage)
        assert numbers(work / "results") == numbers(ref / "results"), (t, at, stage)
        report.append(f"trial {t}: killed at {at:.1f}s in {stage[0]} → restart completed, "
                      "same weights and tables")
    print("\n".join(report))


@pytest.mark.slow
def test_run_all_killed_anywhere_recovers(tmp_path):
    seed = int(os.environ.get("KILL_SEED", "0"))
    print(f"kill-anywhere trials: seed {seed} (replay with KILL_SEED={seed})")
    kill_anywhere_trials(tmp_path, trials=10, seed=seed)


# ---------- a checkpoint that is not what it claims ----------

class _RunsCode:
    """Unpickling this runs its reduce function: here it would create a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_crafted_checkpoint_is_refused_and_its_code_never_runs(tiny_cache, tmp_path, capsys):
    import pickle
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    bad = run_dir / "ckpt-e0001-s000000001.pt"
    torch.save({"model": {}, "config": {}, "payload": _RunsCode(marker)}, bad)
    assert b"touch" in bad.read_bytes()  # the file would call Path.touch when unpickled
    with pytest.raises(checkpoint.UnsafeCheckpoint, match="refused"):
        checkpoint.load(bad)
    from alexnet import evaluate
    assert exit_status(evaluate.main, ["--cache", str(tiny_cache), "--checkpoint", str(bad)]) == 2
    assert "refused" in capsys.readouterr().err.strip().splitlines()[-1]
    with pytest.warns(UserWarning, match="refused"):  # resuming skips it, naming it
        assert checkpoint.latest(run_dir) == (None, None)
    assert not marker.exists()
    with open(tmp_path / "plain.pkl",
              "wb") as f:  # the same object through plain pickle does run: the test can fail
        pickle.dump(_RunsCode(marker), f)
    with open(tmp_path / "plain.pkl", "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_rng_state_round_trips_through_a_safe_load(tmp_path):
    import random as pyrandom

    import numpy as np
    np.random.seed(3)
    np.random.normal()  # leaves a cached Gaussian in numpy's state
    state = checkpoint.rng_state()
    checkpoint.save(tmp_path, {"model": {}, "rng": state, "epoch": 0, "step": 1})
    expect = (torch.rand(3), np.random.normal(size=3), pyrandom.random())
    checkpoint.set_rng_state(checkpoint.load(checkpoint.files(tmp_path)[0])["rng"])
    got = (torch.rand(3), np.random.normal(size=3), pyrandom.random())
    assert torch.equal(expect[0], got[0]) and np.array_equal(expect[1], got[1]) and expect[2] == got[2]


@pytest.mark.parametrize("visible", [1, 0])
def test_a_checkpoint_of_eight_gpus_resumes_on_fewer(monkeypatch, visible):
    """The CUDA RNG states are saved per visible GPU (8 on an 8-GPU node). Resumed where fewer are
    visible, those that exist are restored and the rest named in a warning; before, torch indexed its
    default generators with the eight and the resume died with an IndexError. Simulated: torch.cuda
    pretends `visible` GPUs, and its set_rng_state fails as the real one does past the last."""
    restored = {}

    def set_rng_state(state, device="cuda"):
        i = device if isinstance(device, int) else (torch.device(device).index or 0)
        if i >= visible:
            raise IndexError("list index out of range")  # torch.cuda.default_generators[i]
        restored[i] = state

    monkeypatch.setattr(torch.cuda, "is_available", lambda: visible > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_rng_state)  # what set_rng_state_all calls
    state = {**checkpoint.rng_state(), "cuda": [torch.full((4,), i, dtype=torch.uint8) for i in range(8)]}
    expect = torch.rand(3)
    with pytest.warns(UserWarning, match="8 GPUs and %d are visible" % visible) as caught:
        checkpoint.set_rng_state(state)
    assert torch.equal(torch.rand(3), expect)  # the CPU's state is restored all the same
    assert sorted(restored) == list(range(visible)) and all(int(restored[i][0]) == i for i in restored)
    said = str(caught[0].message)
    assert all(f"cuda:{i}" in said for i in range(visible, 8)) and f"cuda:{visible - 1}," not in said
