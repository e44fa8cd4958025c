"""Batches from a prepared cache: shuffled per epoch, seeded, resumable mid-epoch,
decoded in DataLoader workers (or by nvJPEG, or once into memory) and augmented
on the device that trains on them.

    loader = Loader(cache, "train", cfg, train=True, seed=0)            # CPU or GPU, chosen
    for images, labels in loader: ...                                      # one epoch
    state = loader.state_dict(); ...; loader.load_state_dict(state)      # resume mid-epoch

Every random choice is a pure function of (seed, epoch, batch index): the
epoch's permutation comes from a generator seeded with (seed, epoch), each
batch's crops/flips/α from one seeded with (seed, epoch, batch). So the
loader's whole state is (epoch, next batch), the number of workers does not
change the result, and the CPU and GPU paths see the same draws.

Paths:

- `device="cpu"`: DataLoader workers read the JPEG bytes, decode them with
  `torchvision.io.decode_jpeg` (libjpeg-turbo) and augment in float32.
- a CUDA device, `decoder="cpu"` (the default): the workers read and decode
  as above, into one uint8 batch (a quarter of the float batch's bytes); the
  main process copies it to the GPU (pinned, asynchronous) and augments it
  there. Decoding overlaps the training step, and the GPU sees the very pixels
  a CPU run sees.
- a CUDA device, `decoder="gpu"`: the main process decodes each batch with
  nvJPEG (`decode_jpeg(..., device="cuda")`) and augments it on the GPU. Its
  pixels differ from libjpeg-turbo's by a few levels (chroma upsampling), and
  it first waits for the GPU's queued work (see `_decode`), so decoding does
  not overlap the step.
- resident (`resident=True`, or None: on a GPU, when the decoded split fits
  in a quarter of its free memory): the whole split is decoded once, by the
  chosen decoder, into one uint8 N×3×256×256 tensor on `device`, and each
  batch is gathered from it: the same pixels, so the same batches, with no
  file reading or decoding after that. For small sets (the `gpu` scale's
  10,000 images take 1.97 GB); ILSVRC-2012's 1.28 M images (251 GB decoded)
  never are.

Crops, flips and lighting noise are the same on every path (the same draws).
(torchvision 0.29 marks `torchvision.io` decoding deprecated in favour of
TorchCodec; it is what the pinned version ships, and the one call to change.)
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from ..config import AlexNetConfig
from ..progress import bar as progress_bar
from .augment import Normalizer, batch_buffer, draw
from .cache import Cache


def seed_of(*key: int) -> int:
    """A 63-bit seed that is a pure function of the integers in `key` (numpy's SeedSequence)."""
    return int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> 1)


RESIDENT_SHARE = 4  # resident=None: resident when the decoded split is at most 1/4 of the GPU's free memory
RESIDENT_CHUNK = 512  # images decoded per call when a split is made resident


def cores_each(sharers: int = 1) -> int:
    """Loader processes for each of `sharers` processes that load at once on this machine: its
    cores divided among them, at least one (the default of `Loader(workers=None)`: all cores)."""
    return max(1, (os.cpu_count() or 1) // sharers)


def _generator(*key: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed_of(*key))
    return g


def die_with_parent(parent: int) -> None:
    """Linux: this process is sent SIGKILL when its parent ends, however it ends (a SIGKILL too).
    The loader's forkserver (whose parent is the trainer) and each worker (whose parent is the
    forkserver) call it: PyTorch's workers watch only their parent, the forkserver, which nothing
    else stops, so a killed trainer would leave both behind (about 1.4 GB, for good). Linux sends
    the signal when the parent *thread* ends: this code starts its loaders from the main thread.
    `parent`: the pid the parent had when it started this process, told by the parent, not read
    here: a parent that died before this process first asked would already be another (init)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent ended before the call: no signal will come
        os._exit(1)


PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_ENV = "ALEXNET_LOADER_PARENT"  # the trainer's pid, for its forkserver (_worker_context)
_forkserver_pid: int | None = None  # in the forkserver and the workers it forks: the forkserver's


def _in_forkserver() -> bool:
    """Whether multiprocessing's forkserver is importing this module (its preload, below)."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "main" and frame.f_globals.get("__name__") == "multiprocessing.forkserver":
            return True
        frame = frame.f_back
    return False


if _in_forkserver():
    die_with_parent(int(os.environ.get(PARENT_ENV, os.getppid())))
    _forkserver_pid = os.getpid()


def _worker_init(worker_id: int) -> None:
    die_with_parent(_forkserver_pid if _forkserver_pid is not None else os.getppid())


def _worker_context():
    """Workers forked from a small server process, not from the trainer.

    A worker forked from the trainer shares its memory copy-on-write, so while
    the workers live, each page the trainer writes (weights, gradients,
    activations: ~1.5 GB) is copied once: measured on this 2-core machine, the
    first training step of every epoch took 3.0 s instead of 0.6 s. The server
    imports torch and this module once; a worker forked from it starts in ms.
    """
    ctx = multiprocessing.get_context("forkserver")
    os.environ[PARENT_ENV] = str(os.getpid())  # the forkserver, started from here, inherits it
    ctx.set_forkserver_preload([__name__])
    return ctx


class _BatchSet(torch.utils.data.Dataset):
    """Item b = batch b of the current epoch, made in a worker: finished (the CPU
    path), or decoded into one uint8 tensor (a GPU with the CPU decoder)."""

    def __init__(self, loader: "Loader"):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __getitem__(self, b):
        if self.loader.augment_in_workers:
            return self.loader.make_batch(b)
        return self.loader.decode_batch(b)


class _Chunks(torch.utils.data.Dataset):
    """Item k = images k·RESIDENT_CHUNK … of the split, decoded on the CPU into one uint8 tensor."""

    def __init__(self, loader: "Loader"):
        self.loader, self.n = loader, loader.cache.size(loader.split)

    def __len__(self):
        return -(-self.n // RESIDENT_CHUNK)

    def indices(self, k: int) -> torch.Tensor:
        return torch.arange(k * RESIDENT_CHUNK, min(self.n, (k + 1) * RESIDENT_CHUNK))

    def __getitem__(self, k):
        return self.loader.decode_stacked(self.indices(k))


class Loader:
    def __init__(self, cache: Cache | str, split: str, cfg: AlexNetConfig, *, train: bool,
                 batch_size: int | None = None, seed: int = 0, device: str | torch.device | None = None,
                 workers: int | None = None, views: str = "center", drop_last: bool | None = None,
                 shuffle: bool | None = None, lighting: bool | None = None, progress: bool = False,
                 rank: int = 0, world_size: int = 1, max_batches: int | None = None,
                 resident: bool | None = False, decoder: str = "cpu"):
        self.cache = cache if isinstance(cache, Cache) else Cache(cache)
        if split not in self.cache.splits:
            raise ValueError(f"split {split!r} not in cache {self.cache.root} (has {self.cache.splits})")
        self.split, self.cfg, self.train, self.seed, self.views = split, cfg, train, seed, views
        self.batch_size = batch_size or cfg.batch_size
        self.drop_last = train if drop_last is None else drop_last
        self.shuffle = train if shuffle is None else shuffle
        self.lighting = lighting  # None: cfg.pca_lighting; the schedule may turn it off
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if decoder not in ("cpu", "gpu"):
            raise ValueError(f"decoder={decoder!r}: 'cpu' (libjpeg-turbo in the workers) or 'gpu' (nvJPEG)")
        if decoder == "gpu" and self.device.type != "cuda":
            raise ValueError(f"decoder='gpu' (nvJPEG) needs a CUDA device; the loader's is {self.device}")
        self.decoder = decoder
        self.augment_in_workers = self.device.type == "cpu"  # else the main process augments on the device
        self.workers = cores_each() if workers is None else workers
        self.progress = progress
        self.rank, self.world_size = rank, world_size
        self.max_batches = max_batches  # short runs: only the first N batches of each epoch's order
        self.norm = Normalizer(self.cache.mean, self.cache.eigvals, self.cache.eigvecs, cfg, self.device)
        self.epoch, self.position = 0, 0
        self.labels = torch.as_tensor(self.cache.labels(split))
        self.resident = self.fits_resident() if resident is None else resident
        self._images: torch.Tensor | None = None  # the decoded split, once resident

    def decoded_bytes(self) -> int:
        side = self.cache.mean.shape[-1]
        return self.cache.size(self.split) * 3 * side * side

    def fits_resident(self) -> bool:
        """resident=None's choice: on a GPU, when the decoded split takes at most
        1/RESIDENT_SHARE of its free memory; never on the CPU, where the workers
        decode in parallel with the step anyway."""
        if self.device.type != "cuda":
            return False
        free, _ = torch.cuda.mem_get_info(self.device)
        # ours to reuse
        cached = torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        return self.decoded_bytes() * RESIDENT_SHARE <= free + cached

    def __getstate__(self):
        """What a DataLoader worker gets. A GPU loader's workers only decode: its tensors on the
        GPU (mean image, PCA, a resident split) stay in the main process."""
        state = dict(self.__dict__)
        if not self.augment_in_workers:
            state["norm"], state["_images"] = None, None
        return state

    wait_before_gpu_decode = True  # False only to count what the race does without the wait (a GPU test)

    # ---- order and state ----
    def __len__(self) -> int:
        n = self.cache.size(self.split)
        batches = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return min(batches, self.max_batches) if self.max_batches else batches

    def order(self, epoch: int) -> torch.Tensor:
        n = self.cache.size(self.split)
        return torch.randperm(n, generator=_generator(self.seed, epoch)) if self.shuffle else torch.arange(n)

    def batch_indices(self, b: int) -> tuple[torch.Tensor, slice]:
        """Global batch b of the current epoch, and this rank's rows of it (rank
        r of K takes rows r::K, so the K shares make up exactly the global batch)."""
        idx = self._order[b * self.batch_size:(b + 1) * self.batch_size]
        return idx, slice(self.rank, None, self.world_size)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"loader state has seed {state['seed']}, this loader {self.seed}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0

    # ---- one batch ----
    def _read(self, idx: torch.Tensor) -> list[torch.Tensor]:
        return [torch.frombuffer(bytearray(self.cache.read(self.split, int(i))), dtype=torch.uint8)
                for i in idx]

    def _decode(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Images idx as uint8 3×256×256 tensors: on the GPU (nvJPEG) or the CPU, as self.decoder says."""
        if self.decoder == "cpu":
            return decode_jpeg(self._read(idx), mode=ImageReadMode.RGB)
        # nvJPEG's hardware decoder (A100, H100, H200) writes its outputs before the work already queued
        # on the GPU has run, into blocks the caching allocator has just recycled from tensors that those
        # queued kernels still read: silently corrupted activations, NaN losses (pytorch/vision#9606,
        # meta-pytorch/torchcodec#1634). The training loop never waits for a step, so wait here.
        if self.wait_before_gpu_decode:
            torch.cuda.synchronize(self.device)
        return decode_jpeg(self._read(idx), mode=ImageReadMode.RGB, device=self.device)

    def decode_stacked(self, idx: torch.Tensor) -> torch.Tensor:
        """Images idx decoded on the CPU into one uint8 N×3×256×256 tensor (in a
        worker, in shared memory: handing it to the main process copies nothing)."""
        side = self.cache.mean.shape[-1]
        return torch.stack(self._decode(idx), out=batch_buffer((len(idx), 3, side, side), torch.uint8))

    def decode_batch(self, b: int) -> torch.Tensor:
        """(This rank's share of) batch b decoded on the CPU, not yet augmented (a worker's share
        of the GPU path with the CPU decoder)."""
        idx, rows = self.batch_indices(b)
        return self.decode_stacked(idx[rows])

    def images(self) -> torch.Tensor:
        """The whole split decoded, uint8 N×3×256×256 on self.device (resident); decoded on first use,
        by the workers (CPU decoder) or by nvJPEG, a chunk at a time."""
        if self._images is None:
            n, side = self.cache.size(self.split), self.cache.mean.shape[-1]
            images = torch.empty((n, 3, side, side), dtype=torch.uint8, device=self.device)
            parts = _Chunks(self)
            if self.decoder == "cpu":
                chunks = self._worker_items(parts, range(len(parts)))
            else:
                chunks = (torch.stack(self._decode(parts.indices(k))) for k in range(len(parts)))
            bar = progress_bar(total=n, unit="image", desc=f"decoding {self.split} into memory", leave=False,
                               enabled=self.progress)
            start = 0
            for chunk in chunks:
                images[start:start + len(chunk)].copy_(chunk)
                start += len(chunk)
                bar.update(len(chunk))
            bar.close()
            self._images = images
        return self._images

    def augment(self, b: int, x) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch b's uint8 images (this rank's share; a tensor or a list) → its §4.1 input on
        self.device, and its labels."""
        idx, rows = self.batch_indices(b)
        if self.train:  # draws for the whole global batch, so K ranks see what one process would
            d = draw(len(idx), self.cfg, _generator(self.seed, self.epoch, b), self.cache.mean.shape[-1])
            x = self.norm.train_batch(x, d.select(rows), lighting=self.lighting)
        else:
            x = self.norm.test_batch(x, self.views)
        return x, self.labels[idx[rows]].to(self.device, non_blocking=True)

    def make_batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(This rank's share of) batch b, decoded (or gathered, when resident) and augmented, on
        self.device, in this process (a worker's, on the CPU path)."""
        idx, rows = self.batch_indices(b)
        mine = idx[rows]
        x = self.images()[mine.to(self.device)] if self.resident else self._decode(mine)
        return self.augment(b, x)

    def _worker_items(self, dataset, items):
        """dataset[i] for i in items, made by self.workers DataLoader workers, in order."""
        dl = torch.utils.data.DataLoader(
            dataset, batch_size=None, sampler=items, num_workers=self.workers,
            pin_memory=self.device.type == "cuda", prefetch_factor=2 if self.workers else None,
            multiprocessing_context=_worker_context() if self.workers else None, worker_init_fn=_worker_init,
            # its own generator: creating an iterator must not consume the global
            # RNG that dropout uses, or a resumed run would drift from an uninterrupted one
            generator=torch.Generator().manual_seed(self.seed))
        yield from dl

    def _batches(self, start: int):
        """The epoch's batches from `start`: (x, y) on self.device."""
        items = range(start, len(self))
        if self.augment_in_workers:
            yield from self._worker_items(_BatchSet(self), items)
        elif self.resident or self.decoder == "gpu":
            for b in items:
                yield self.make_batch(b)
        else:  # decoded by the workers, copied while the device works, augmented there
            for b, x in zip(items, self._worker_items(_BatchSet(self), items)):
                yield self.augment(b, x.to(self.device, non_blocking=True))

    def __iter__(self):
        self._order = self.order(self.epoch)
        if self.resident:
            self.images()  # here, so that CPU workers share one copy instead of each decoding its own
        start = self.position
        batches = self._batches(start)
        bar = None
        if self.progress:
            bar = progress_bar(total=len(self), initial=start, unit="batch",
                               desc=f"{self.split} epoch {self.epoch}", leave=False)
        t0, seen = time.perf_counter(), 0
        for x, y in batches:
            self.position += 1
            if self.position == len(self):  # the state after the last batch is the next epoch's start
                self.epoch, self.position = self.epoch + 1, 0
            seen += len(y)
            if bar is not None:
                bar.update()
                bar.set_postfix(img_s=f"{seen / (time.perf_counter() - t0):.0f}", refresh=False)
            yield x, y
        if bar is not None:
            bar.close()
