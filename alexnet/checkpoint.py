"""Checkpoints that survive crashes: written atomically, several kept, the
newest *valid* one found on restart (STYLE.md §6: model, optimizer, schedule,
epoch and step, loader position, every RNG state, the config, the code version).
"""

from __future__ import annotations

import os
import random
import subprocess
import warnings
from pathlib import Path

import numpy as np
import torch

PATTERN = "ckpt-e{epoch:04d}-s{step:09d}.pt"


def code_version() -> str:
    """The git commit of the code (with '+dirty' for local changes), or 'unknown'."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (commit + ("+dirty" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, payload: dict, keep: int = 3) -> Path:
    """Write payload to run_dir/ckpt-e…-s….pt: temporary file, fsync, rename,
    fsync the directory; then delete all but the newest `keep`. If the write
    fails (disk full), the temporary file is removed and the previous
    checkpoints are untouched."""
    run_dir = Path(run_dir)
    path = run_dir / PATTERN.format(epoch=payload["epoch"], step=payload["step"])
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for old in sorted(run_dir.glob("ckpt-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def latest(run_dir: Path, map_location="cpu") -> tuple[Path, dict] | tuple[None, None]:
    """The newest checkpoint that loads; corrupt or truncated ones are skipped
    with a warning naming them."""
    for path in sorted(Path(run_dir).glob("ckpt-*.pt"), reverse=True):
        try:
            payload = torch.load(path, map_location=map_location, weights_only=False)
            if not isinstance(payload, dict) or "model" not in payload:
                raise ValueError("not a training checkpoint")
            return path, payload
        except Exception as e:  # noqa: BLE001 — any unreadable file is skipped
            warnings.warn(f"skipping unreadable checkpoint {path} ({type(e).__name__}: {e})", stacklevel=2)
    return None, None
