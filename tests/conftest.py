"""Shared fixtures (a tiny synthetic ILSVRC-2012 dataset and its cache, an
ImageFolder with broken images) and the helpers that run training."""

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet import checkpoint
from alexnet.data.prepare import prepare
from alexnet.data.sources import ilsvrc2012
from alexnet.data.synthetic import write_synthetic_ilsvrc

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(classes=4, train_per_class=12, val_per_class=4, seed=7)
os.environ.setdefault("ALEXNET_PLAN_SECONDS", "1")  # run_all's rate measurement when no benchmark fits: short
# Under pytest-xdist each worker takes its share of the cores (2 workers on 2 cores: one thread each), in
# process and in the processes it starts: torch's default of a thread per core in every worker
# oversubscribes the cores.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(_threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # subprocesses: one thread each, the suite runs on 2 cores
# The suite's tmp folders peak at 2.2 GiB per pytest process (measured; a passed test's folder is
# removed at once, pyproject.toml), most of it full-size checkpoints of 435 MiB: say so before any
# test fails on it.
DISK_NEEDED_GIB = 2.5


def pytest_sessionstart(session):
    workers = session.config.getoption("numprocesses", default=None)  # pytest-xdist's -n
    needed = DISK_NEEDED_GIB * (workers if isinstance(workers, int) and workers > 0 else 1)
    free = shutil.disk_usage(tempfile.gettempdir()).free / 2**30
    if free < needed:
        pytest.exit(f"the test suite needs about {needed:g} GiB free in {tempfile.gettempdir()} "
                    f"(its checkpoints are full-size); {free:.1f} GiB are free. Free space, or point "
                    "TMPDIR at a disk with room, and run it again.", returncode=1)


@pytest.fixture(scope="session")
def tiny_archives(tmp_path_factory):
    """A tiny synthetic dataset in the ILSVRC-2012 archive format."""
    return write_synthetic_ilsvrc(tmp_path_factory.mktemp("ilsvrc"), progress=False, **TINY)


@pytest.fixture(scope="session")
def tiny_cache(tiny_archives, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "tiny"
    prepare(ilsvrc2012(tiny_archives), out, workers=2, progress=False)
    return out


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


@pytest.fixture()
def messy_folder(tmp_path):
    """An ImageFolder (train/, val/; classes a, b) with what ImageNet really
    contains: CMYK, grayscale, a PNG named .JPEG, a truncated file, garbage."""
    rng = np.random.default_rng(0)
    rgb = lambda: Image.fromarray(rng.integers(0, 255, (300, 280, 3), dtype=np.uint8))  # noqa: E731
    root = tmp_path / "messy"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                (root / split / cls / f"ok{i}.JPEG").write_bytes(jpeg_bytes(rgb()))
    a = root / "train" / "a"
    (a / "cmyk.JPEG").write_bytes(jpeg_bytes(rgb().convert("CMYK")))
    png = io.BytesIO()
    rgb().save(png, "PNG")
    (a / "png_named.JPEG").write_bytes(png.getvalue())
    (a / "gray.JPEG").write_bytes(jpeg_bytes(rgb().convert("L")))
    good = jpeg_bytes(rgb())
    (a / "truncated.JPEG").write_bytes(good[: len(good) // 2])
    (a / "garbage.JPEG").write_bytes(b"this is not an image")
    return root


def colour_folder(root: Path, names=("chat noir", "狗", "red_fox"), train: int = 24, val: int = 6) -> Path:
    """A user's small ImageFolder that a linear classifier solves: class c is noise in colour
    channel c % 3 alone. Class names with a space and a CJK character, JPEG and PNG mixed,
    sizes that vary."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c, name in enumerate(names):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = np.zeros((120 + i, 150, 3), np.uint8)
                pixels[..., c % 3] = rng.integers(0, 256, pixels.shape[:2])
                Image.fromarray(pixels).save(root / split / name / f"img {i}.{'jpg' if i % 2 else 'png'}")
    return root


# ---------- training, in another process (for kills, signals and resource limits) ----------

def train_argv(cache, run_dir, *extra) -> list[str]:
    """`python -m alexnet.train` arguments for a small run on the tiny cache."""
    return ["--cache", str(cache), "--run-dir", str(run_dir), "--batch-size", "4", "--workers", "0",
            "--no-progress", *extra]


def train_cmd(cache, run_dir, *extra) -> list[str]:
    return [sys.executable, "-m", "alexnet.train", *train_argv(cache, run_dir, *extra)]


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=ENV, **kw)


# two epochs of 6 batches of 4 (of the tiny set's 12): checkpoints after steps 3, 6 (the end of epoch
# 1), 9, 12
REFERENCE_ARGS = ("--epochs", "2", "--train-batches", "6", "--checkpoint-steps", "3", "--keep", "2")
REFERENCE_STEPS = 12


@pytest.fixture(scope="session")
def reference_run(tiny_cache, tmp_path_factory) -> dict:
    """One uninterrupted 2-epoch run (its own process, one thread), the checkpoint that
    every interrupted-and-resumed run must reproduce bit for bit."""
    d = tmp_path_factory.mktemp("reference") / "run"
    r = run(train_cmd(tiny_cache, d, *REFERENCE_ARGS))
    assert r.returncode == 0, r.stderr
    ck = final_weights(d)
    assert ck["epoch"] == 2 and ck["step"] == REFERENCE_STEPS
    return ck


def wait_for(pred, timeout=120) -> bool:
    """Poll `pred` every 50 ms until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def kill_after_checkpoint(cmd, run_dir: Path, step: int, delay: float) -> None:
    """Start `cmd`, and SIGKILL it `delay` seconds after `run_dir` holds a checkpoint
    of step ≥ `step` (or after it ended by itself)."""
    p = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: p.poll() is not None
             or any(checkpoint.step_of(f) >= step for f in checkpoint.files(run_dir)))
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait()


def assert_same_run(got: dict, ref: dict, what: str) -> None:
    """Bit for bit: the weights, and each epoch's validation error and training loss."""
    assert got["step"] == ref["step"], what
    for k, v in ref["model"].items():
        assert torch.equal(v, got["model"][k]), f"{what}: {k} differs"
    assert [h["val_top1"] for h in got["history"]] == [h["val_top1"] for h in ref["history"]], what
    assert [h["train_loss"] for h in got["history"]] == [h["train_loss"] for h in ref["history"]], what


def final_weights(run_dir) -> dict:
    _, ck = checkpoint.latest(run_dir)
    assert ck is not None, f"{run_dir}: no checkpoint"
    return ck
