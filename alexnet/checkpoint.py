"""Checkpoints that survive crashes: written atomically, several kept, the
newest *valid* one found on restart; and safe to load: every load is
`torch.load(..., weights_only=True)`, which builds tensors and plain Python
values only, so a crafted file cannot run code (its refusal names the file).
A checkpoint holds (model, optimizer, schedule,
epoch and step, loader position, every RNG state, the config, the code version).
"""

from __future__ import annotations

import fcntl
import io
import os
import pickle
import random
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write, is_disk_full

PATTERN = "ckpt-e{epoch:04d}-s{step:09d}.pt"


def files(run_dir) -> list[Path]:
    """A run directory's checkpoints, oldest first (the names sort by epoch, then step)."""
    return sorted(Path(run_dir).glob("ckpt-*.pt"))


def epoch_of(path: Path) -> int:
    """The epoch count in a checkpoint's name (PATTERN)."""
    return int(path.name.split("-")[1][1:])


def step_of(path: Path) -> int:
    """The step count in a checkpoint's name (PATTERN)."""
    return int(path.name.split("-")[2][1:-3])


def code_version() -> str:
    """The git commit of the code (with '+dirty' for local changes to tracked
    files outside results/, which runs rewrite themselves); for a copy of the tree
    without its .git, $ALEXNET_CODE_VERSION when set; else 'unknown'."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists() and os.environ.get("ALEXNET_CODE_VERSION"):
        return os.environ["ALEXNET_CODE_VERSION"]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (commit + ("+dirty" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def rng_state() -> dict:
    """Every RNG's state in types that `weights_only` loading accepts (numpy's as a dict and a tensor)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"bit_generator": name, "keys": torch.from_numpy(keys.astype(np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """The saved states back in place. The CUDA states are per GPU: those of the GPUs visible now are
    restored, the others are named in a warning (a checkpoint of an 8-GPU node resumed on one GPU, or
    on none). Nothing in training draws from them: dropout draws from per-tower generators seeded every
    step (engine.Trainer.seed_dropout), the loader from its own; they cover only other code's draws."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["bit_generator"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(state["python"])
    saved = state.get("cuda", [])
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for i, s in enumerate(saved[:visible]):
        torch.cuda.set_rng_state(s, i)
    if len(saved) > visible:
        lost = ", ".join(f"cuda:{i}" for i in range(visible, len(saved)))
        warnings.warn(f"the checkpoint holds the CUDA RNG states of {len(saved)} GPUs and {visible} are "
                      f"visible: those of {lost} are not restored (training draws nothing from them)",
                      stacklevel=2)


class DiskFull(OSError):
    """A write that ran out of space; the message says how much is needed."""


def disk_full_message(path: Path, needed: int, previous: str) -> str:
    free = shutil.disk_usage(path.parent).free
    return (f"no space left writing {path}: it needs about {needed / 2**20:.0f} MiB, "
            f"{free / 2**20:.0f} MiB are free. {previous} Free space (or point the output elsewhere) "
            "and run the same command again.")


def save(run_dir: Path, payload: dict, keep: int = 3) -> Path:
    """Write payload to run_dir/ckpt-e…-s….pt: temporary file, fsync, rename,
    fsync the directory; then delete all but the newest `keep`. If the write
    fails (disk full), the temporary file is removed, the previous checkpoints
    are untouched, and DiskFull says how much space is needed."""
    run_dir = Path(run_dir)
    path = run_dir / PATTERN.format(epoch=payload["epoch"], step=payload["step"])
    buf = io.BytesIO()
    torch.save(payload, buf)  # serialized first: its size is what a full disk must make room for
    try:
        atomic_write(path, lambda f: f.write(buf.getbuffer()))
    except OSError as e:
        if is_disk_full(e):
            prev = files(run_dir)
            raise DiskFull(e.errno, disk_full_message(
                path, buf.getbuffer().nbytes, f"The previous checkpoint {prev[-1]} is intact." if prev
                else "No earlier checkpoint exists.")) from None
        raise
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for old in files(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


class RunLocked(RuntimeError):
    pass


class RunLock:
    """An exclusive lock on a run directory (fcntl.flock on <dir>/.lock): a second
    process on the same directory is refused instead of both writing. The
    kernel releases it when the process ends, however it ends (SIGKILL too)."""

    def __init__(self, run_dir: Path, what: str = "training run"):
        self.path = Path(run_dir) / ".lock"
        self.what = what
        self.fd = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunLocked(f"{self.path.parent} is in use by another {self.what} (pid {holder}); "
                               "wait for it to finish, or choose another directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None


class UnsafeCheckpoint(ValueError):
    """A file whose pickle asks for more than tensors and plain values: refused unread."""


def load(path: str | Path, map_location="cpu", mmap: bool = False) -> dict:
    """A training checkpoint, loaded with `weights_only=True`. UnsafeCheckpoint
    for a file that needs any other object to load (it is not unpickled, so
    nothing in it runs); ValueError for a file that is not a checkpoint.
    `mmap=True`: tensors are read from the file only when used (to read its other fields)."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsafeCheckpoint(
            f"{path}: refused: loading it would need objects other than tensors and plain values ({first}). "
            "It may be a checkpoint of an older version of this project or from elsewhere; "
            "only files written by this version load, and nothing in this one was run") from None
    if not isinstance(payload, dict) or "model" not in payload:
        raise ValueError(f"{path}: not a training checkpoint (no model inside)")
    return payload


def read(path, map_location="cpu") -> tuple[Path, dict] | tuple[None, None]:
    """A checkpoint file (`load`), or a run directory's newest valid one (`latest`)."""
    path = Path(path)
    return latest(path, map_location) if path.is_dir() else (path, load(path, map_location))


def latest(run_dir: Path, map_location="cpu") -> tuple[Path, dict] | tuple[None, None]:
    """The newest checkpoint that loads (safely: `load`); corrupt, truncated or
    refused ones are skipped with a warning naming them."""
    for path in reversed(files(run_dir)):
        try:
            return path, load(path, map_location)
        except Exception as e:  # noqa: BLE001 — any unreadable file is skipped
            warnings.warn(f"skipping unreadable checkpoint {path} ({type(e).__name__}: {e})", stacklevel=2)
    return None, None
