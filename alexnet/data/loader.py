"""Batches from a prepared cache: shuffled per epoch, seeded, resumable mid-epoch,
decoded and augmented on the CPU (DataLoader workers) or on the GPU.

    loader = Loader(cache, "train", cfg, train=True, seed=0)            # CPU or GPU, chosen
    for images, labels in loader: ...                                      # one epoch
    state = loader.state_dict(); ...; loader.load_state_dict(state)      # resume mid-epoch

Every random choice is a pure function of (seed, epoch, batch index): the
epoch's permutation comes from a generator seeded with (seed, epoch), each
batch's crops/flips/α from one seeded with (seed, epoch, batch). So the
loader's whole state is (epoch, next batch), the number of workers does not
change the result, and the CPU and GPU paths see the same draws.

Paths (`device=`): "cpu" — workers read JPEG bytes, decode with
`torchvision.io.decode_jpeg` (libjpeg-turbo) and augment in float32 on the CPU;
a CUDA device — the main process reads the bytes and decodes the whole batch
with nvjpeg (`decode_jpeg(..., device="cuda")`), augmenting on the GPU. The
decoders may differ by a few levels in some pixel values; crops, flips and noise are the same.
(torchvision 0.29 marks `torchvision.io` decoding deprecated in favour of
TorchCodec; it is what the pinned version ships, and the one call to change.)

Resident (`resident=True`, or None: when the decoded split fits in a quarter of
the GPU's free memory): the whole split is decoded once, by the same decoder,
into one uint8 N×3×256×256 tensor on `device`, and each batch is gathered from
it; the same pixels as decoding every batch, so the same batches. For small
sets on a GPU (the `gpu` scale's 10,000 images take 1.97 GB): the training loop
then neither reads files nor waits for the GPU before decoding (below) in any
epoch but its first. ILSVRC-2012's 1.28 M images (251 GB decoded) are never resident.
"""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from ..config import AlexNetConfig
from ..progress import bar as progress_bar
from .augment import Normalizer, draw
from .cache import Cache


def seed_of(*key: int) -> int:
    """A 63-bit seed that is a pure function of the integers in `key` (numpy's SeedSequence)."""
    return int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> 1)


RESIDENT_SHARE = 4  # resident=None: resident when the decoded split is at most 1/4 of the GPU's free memory
RESIDENT_CHUNK = 512  # images decoded per call when a split is made resident


def _generator(*key: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed_of(*key))
    return g


def _worker_context():
    """Workers forked from a small server process, not from the trainer.

    A worker forked from the trainer shares its memory copy-on-write, so while
    the workers live, each page the trainer writes (weights, gradients,
    activations: ~1.5 GB) is copied once: measured on this 2-core machine, the
    first training step of every epoch took 3.0 s instead of 0.6 s. The server
    imports torch and this module once; a worker forked from it starts in ms.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


class _BatchSet(torch.utils.data.Dataset):
    """Item b = the whole, finished batch b of the current epoch (CPU path)."""

    def __init__(self, loader: "Loader"):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __getitem__(self, b):
        return self.loader.make_batch(b)


class Loader:
    def __init__(self, cache: Cache | str, split: str, cfg: AlexNetConfig, *, train: bool,
                 batch_size: int | None = None, seed: int = 0, device: str | torch.device | None = None,
                 workers: int | None = None, views: str = "center", drop_last: bool | None = None,
                 shuffle: bool | None = None, lighting: bool | None = None, progress: bool = False,
                 rank: int = 0, world_size: int = 1, max_batches: int | None = None,
                 resident: bool | None = False):
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
        self.workers = (os.cpu_count() or 1) if workers is None else workers
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
        cached = torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)  # ours to reuse
        return self.decoded_bytes() * RESIDENT_SHARE <= free + cached

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
        return [torch.frombuffer(bytearray(self.cache.read(self.split, int(i))), dtype=torch.uint8) for i in idx]

    def _decode(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Images idx as uint8 3×256×256 tensors on self.device."""
        if self.device.type == "cuda":
            # nvJPEG's hardware decoder (A100, H100, H200) writes its outputs before the work already queued
            # on the GPU has run, into blocks the caching allocator has just recycled from tensors that those
            # queued kernels still read: silently corrupted activations, NaN losses (pytorch/vision#9606,
            # meta-pytorch/torchcodec#1634). The training loop never waits for a step, so wait here.
            torch.cuda.synchronize(self.device)
        return decode_jpeg(self._read(idx), mode=ImageReadMode.RGB, device=self.device)

    def images(self) -> torch.Tensor:
        """The whole split decoded, uint8 N×3×256×256 on self.device (resident); decoded on first use."""
        if self._images is None:
            n, side = self.cache.size(self.split), self.cache.mean.shape[-1]
            images = torch.empty((n, 3, side, side), dtype=torch.uint8, device=self.device)
            chunks = range(0, n, RESIDENT_CHUNK)
            bar = progress_bar(iterable=chunks, unit="chunk", desc=f"decoding {self.split} into memory",
                               leave=False, enabled=self.progress)
            for start in bar:
                idx = torch.arange(start, min(n, start + RESIDENT_CHUNK))
                images[start:start + len(idx)] = torch.stack(self._decode(idx))
            self._images = images
        return self._images

    def make_batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode (or gather, when resident) and augment (this rank's share of)
        batch b on self.device: in a DataLoader worker for the CPU, with nvjpeg in
        this process for a GPU."""
        idx, rows = self.batch_indices(b)
        mine = idx[rows]
        if self.resident:
            x = self.images()[mine.to(self.device)]  # N×3×256×256
        else:
            x = self._decode(mine)  # list of 3×256×256
        if self.train:  # draws for the whole global batch, so K ranks see what one process would
            d = draw(len(idx), self.cfg, _generator(self.seed, self.epoch, b), self.cache.mean.shape[-1])
            x = self.norm.train_batch(x, d.select(rows), lighting=self.lighting)
        else:
            x = self.norm.test_batch(x, self.views)
        return x, self.labels[mine].to(self.device, non_blocking=True)

    def _gpu_batches(self, start: int):
        for b in range(start, len(self)):
            yield self.make_batch(b)

    def _cpu_batches(self, start: int):
        ds = _BatchSet(self)
        dl = torch.utils.data.DataLoader(
            ds, batch_size=None, sampler=range(start, len(self)), num_workers=self.workers,
            pin_memory=False, prefetch_factor=2 if self.workers else None,
            multiprocessing_context=_worker_context() if self.workers else None,
            # its own generator: creating an iterator must not consume the global
            # RNG that dropout uses, or a resumed run would drift from an uninterrupted one
            generator=torch.Generator().manual_seed(self.seed))
        yield from dl

    def __iter__(self):
        self._order = self.order(self.epoch)
        if self.resident:
            self.images()  # here, so that CPU workers share one copy instead of each decoding its own
        start = self.position
        batches = self._gpu_batches(start) if self.device.type == "cuda" else self._cpu_batches(start)
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
