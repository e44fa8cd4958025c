"""Read a prepared cache (format: `alexnet.data.prepare`)."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1  # of the files tools.prepare writes; a reader refuses any other
MAX_OPEN = 128  # data files held open per process: ILSVRC's train split has a shard per class (1000),
                # and many systems allow a process 1024 open files


class CacheError(ValueError):
    """A cache that is missing, unfinished or inconsistent; the message says what to do."""


class Cache:
    """Random access to the prepared 256×256 JPEGs of one dataset.

    `cache.labels(split)`, `cache.read(split, i)` → JPEG bytes, `cache.mean`
    (3×256×256 float64, 0–255), `cache.eigvals` / `cache.eigvecs` (RGB PCA).
    File handles are opened lazily per process, so a Cache can be handed to
    DataLoader workers, and at most MAX_OPEN at a time (least recently used
    closed first).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.exists():
            hint = ("an unfinished prepare: run the same prepare command again to finish it"
                    if any(self.root.glob("*.npz")) else "run `python -m tools.prepare` first")
            raise CacheError(f"{self.root}: not a prepared cache (no meta.json); {hint}")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise CacheError(f"{self.root}: cache format {self.meta.get('format_version')} but this code "
                             f"reads {FORMAT_VERSION}; delete the folder and prepare again")
        self.classes = self.meta["classes"]
        self._index = {}
        for split, info in self.meta["splits"].items():
            idx = dict(np.load(self.root / f"{split}.index.npz"))
            self._check(split, info, idx)
            self._index[split] = idx
        self.mean = np.load(self.root / "mean.npy")
        pca = np.load(self.root / "pca.npz")
        self.cov, self.eigvals, self.eigvecs = pca["cov"], pca["eigvals"], pca["eigvecs"]
        self._fds: OrderedDict = OrderedDict()
        self._pid = None

    def _check(self, split: str, info: dict, idx: dict) -> None:
        n = len(idx["offset"])
        if n != info["count"]:
            raise CacheError(f"{self.root / (split + '.index.npz')}: {n} entries but meta.json says "
                             f"{info['count']}; the cache is inconsistent: delete it and prepare again")
        for k, size in enumerate(info["shard_bytes"]):
            path = self.root / f"{split}-{k:05d}.bin"
            actual = path.stat().st_size if path.exists() else -1
            if actual != size:
                raise CacheError(f"{path}: {actual} bytes, index expects {size}; the data file does not "
                                 f"match its index: delete {path.with_suffix('.npz')} and {path.name} and "
                                 "run prepare again to rebuild that shard (then delete meta.json)")
        if n:
            end = idx["offset"] + idx["length"]
            sizes = np.array(info["shard_bytes"], np.int64)[idx["shard"]]
            if np.any(end > sizes):
                raise CacheError(f"{self.root}: {split} index points past the end of its data files; "
                                 "delete the cache and prepare again")

    @property
    def splits(self) -> list[str]:
        return list(self._index)

    def size(self, split: str) -> int:
        return len(self._index[split]["offset"])

    def labels(self, split: str) -> np.ndarray:
        return self._index[split]["label"]

    def names(self, split: str) -> np.ndarray:
        return self._index[split]["name"]

    def read(self, split: str, i: int) -> bytes:
        if self._pid != os.getpid():  # new process (DataLoader worker): fresh handles
            self._fds, self._pid = OrderedDict(), os.getpid()
        idx = self._index[split]
        key = (split, int(idx["shard"][i]))
        fd = self._fds.get(key)
        if fd is None:
            if len(self._fds) >= MAX_OPEN:
                os.close(self._fds.popitem(last=False)[1])
            fd = self._fds[key] = os.open(self.root / f"{split}-{key[1]:05d}.bin", os.O_RDONLY)
        else:
            self._fds.move_to_end(key)
        return os.pread(fd, int(idx["length"][i]), int(idx["offset"][i]))

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fds"], state["_pid"] = OrderedDict(), None
        return state
