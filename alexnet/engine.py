"""Training and evaluation: one SGD step (§5), one epoch, a whole resumable run,
and the evaluation of §4.1 and §6.

    from alexnet.engine import TrainOptions, fit
    cfg = AlexNetConfig.from_profile("paper", num_classes=10, epochs=14)
    fit(cfg, TrainOptions(cache="cache/synthetic-g4", run_dir="runs/1cnn"))   # 0 when done

`train_step` is the only training step in the project: `Trainer` (and so
`python -m alexnet.train` and `reproduce/run_all`), the benchmark
(`tools/bench.py`) and Figure 1's small net (`reproduce/figure1.py`) all call it.
Evaluation: softmax over the centre patch or averaged over §4.1's ten patches,
top-1/top-5 error, ensembles ("5 CNNs": the average of several nets' softmax),
and the 4096-d features of §6.1.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import math
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint, distributed
from .atomic import atomic_write, write_text
from .config import AlexNetConfig
from .data.cache import Cache
from .data.loader import Loader, cores_each, seed_of
from .diagnostics import LayerProbe, StepLog
from .model import AlexNet
from .optim import PaperSGD, param_groups
from .placement import resolve_devices
from .progress import bar as progress_bar
from .schedule import apply, make_schedule, same_course, warmup
from .speed import FAITHFUL_LABEL, Speed

EXIT_NONFINITE, EXIT_DISK_FULL, EXIT_RANK_LOST, EXIT_INTERRUPTED = 3, 4, 5, 130
CONV1_INIT = "conv1_init.npy"  # in a run directory: conv1's kernels before the first step
NONFINITE = "nonfinite.json"  # in a run directory: the step whose loss was not finite, and its batch


DROPOUT_STREAM = 0xD0  # the key that sets each replica's dropout generator apart from the loader's streams
DROPOUT_EVAL_STREAM = 0xD1  # dropout_predictions' masks: apart from training's


def dropout_seed(seed: int, tower: int, rank: int, step: int) -> int:
    """The seed of a tower's dropout generator before a step (§4.2's masks): a function of these four
    numbers alone, so the towers' masks are independent, every replica draws its own, and a resumed
    run draws what it would have drawn (Trainer.seed_dropout; tools.replay redraws a job's from it)."""
    return seed_of(seed, DROPOUT_STREAM, tower, rank, step)


class NonFiniteLoss(RuntimeError):
    pass


# ---------------------------------------------------------------- evaluation

def topk_wrong_counts(logits_or_probs: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> torch.Tensor:
    """Number of samples whose label is not among the top k, for each k, as a
    tensor on the input's device (no wait for the GPU)."""
    k_max = min(max(ks), logits_or_probs.shape[1])
    top = logits_or_probs.topk(k_max, dim=1).indices
    hit = top == labels.to(top.device)[:, None]
    return torch.stack([(~hit[:, :min(k, k_max)].any(dim=1)).sum() for k in ks])


def topk_wrong(logits_or_probs: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """`topk_wrong_counts` as {k: count}."""
    return dict(zip(ks, topk_wrong_counts(logits_or_probs, labels, ks).tolist()))


@torch.no_grad()
def outputs(fn, model, loader):
    """(fn(x) as float32 on the CPU, labels) for each batch of a loader, in eval mode: one batch
    in memory at a time."""
    was = model.training
    model.eval()
    try:
        for x, y in loader:
            yield fn(x).float().cpu(), y.cpu()
    finally:
        model.train(was)


def _eval_outputs(fn, model, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """fn(x) for every batch of a loader, in eval mode, concatenated on the CPU, with the labels."""
    out, labels = zip(*outputs(fn, model, loader))
    return torch.cat(out), torch.cat(labels)


def predict(model, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities (N×C, CPU) and labels for a loader's split; a
    loader with views="ten" yields N×10×3×S×S and the ten softmaxes are averaged (§4.1)."""
    def probs(x):
        if x.dim() == 5:
            n, v = x.shape[:2]
            return F.softmax(model(x.flatten(0, 1)), dim=1).view(n, v, -1).mean(dim=1)
        return F.softmax(model(x), dim=1)
    return _eval_outputs(probs, model, loader)


def dropout_predictions(model, loader, masks: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """§4.2: "At test time, we use all the neurons but multiply their outputs by 0.5, which is a
    reasonable approximation to taking the geometric mean of the predictive distributions produced by
    the exponentially-many dropout networks." Both, for a loader's split: the net in eval mode (×0.5:
    its log-softmax), and the mean log-softmax of `masks` dropout networks (the log of their normalized
    geometric mean, up to a constant per image: the same ranking of classes). Mask m of batch b is drawn
    from generators seeded with (DROPOUT_EVAL_STREAM, m, b, tower): the same networks on every call.
    Returns (scaled, geometric, labels): N×C, N×C and N."""
    drops = [d for t in model.towers for d in (t.drop6, t.drop7)]
    gens = [torch.Generator(t.device) for t in model.towers]
    batch = iter(range(1 << 62))

    def both(x):
        b = next(batch)
        scaled = F.log_softmax(model(x), dim=1)
        total = torch.zeros_like(scaled)
        before = [d.generator for d in drops]
        try:
            for t, g in zip(model.towers, gens):
                for d in (t.drop6, t.drop7):
                    d.train()
                    d.generator = g
            for m in range(masks):
                for tower, g in enumerate(gens):
                    g.manual_seed(seed_of(DROPOUT_EVAL_STREAM, m, b, tower))
                total += F.log_softmax(model(x), dim=1)
        finally:
            for d, g in zip(drops, before):
                d.eval()
                d.generator = g
        return torch.cat([scaled, total / masks], dim=1)

    out, labels = _eval_outputs(both, model, loader)
    c = out.shape[1] // 2
    return out[:, :c], out[:, c:], labels


def features(model, loader):
    """Last hidden layer (4096-d, fc7 after ReLU), centre patch: (features, labels) batch by batch."""
    return outputs(model.features, model, loader)


def errors(probs: torch.Tensor, labels: torch.Tensor, per_image: bool = False) -> dict:
    """Top-1 and top-5 error rates; with `per_image`, also the top-1 per image ("wrong": wrong_bits)."""
    wrong = topk_wrong(probs, labels)
    n = len(labels)
    return {"top1": wrong[1] / n, "top5": wrong[5] / n, "n": n,
            **({"wrong": wrong_bits(probs, labels)} if per_image else {})}


def load_model(path: str | Path, devices=None) -> tuple[AlexNet, dict, Path]:
    """The model of a checkpoint file, or of a run directory's newest valid one,
    in eval mode; with the checkpoint's other entries (config, epoch, dataset, ...:
    not its weights, now the model's, nor the optimizer's state, as large again,
    which classifying never needs) and its path. Sets the faithful mode's backend switches
    (`Speed.setup`: TF32 off, cuDNN deterministic), which the model then runs in."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"--checkpoint {path}: no such file or run directory")
    found, ck = checkpoint.read(path)
    if ck is None:
        raise ValueError(f"{path}: no readable checkpoint (ckpt-*.pt) inside; train first")
    path = found
    if "config" not in ck:
        raise ValueError(f"{path}: a checkpoint without the config of its model; not one of this project's")
    model = AlexNet(AlexNetConfig.from_dict(ck["config"]), devices, weights=ck["model"])
    FAITHFUL.setup()
    return model.eval(), {k: v for k, v in ck.items() if k not in ("model", "optimizer")}, path


def evaluate(cache: Cache, paths: list, split: str = "val", views=("center", "ten"), devices=None,
             batch_size: int = 64, workers: int | None = None) -> tuple[dict, dict]:
    """Errors of each checkpoint and of their ensemble, per view mode; and the
    ensemble's softmax per view mode: §6 "averaging the predictions of five similar
    CNNs", the mean softmax, summed checkpoint by checkpoint, so memory holds one
    N×C array per view (191 MiB at ILSVRC's 50,000 × 1000) whatever their number. In faithful mode's
    backend switches (`load_model`), recorded in the result's "backend"."""
    out = {"split": split, "images": cache.size(split), "classes": len(cache.classes), "checkpoints": [],
           "ensemble": {}, "backend": FAITHFUL.setup()}
    total: dict[str, torch.Tensor] = {}
    labels = None
    for p in paths:
        model, ck, path = load_model(p, devices)
        entry = {"path": str(path), "epoch": ck["epoch"], "step": ck["step"], "saved_at": ck.get("saved_at"),
                 "profile": ck["config"]["profile"], "mode": ck.get("mode", FAITHFUL_LABEL),
                 "config": ck["config"]}  # what the tables check a result against (reproduce/tables.py)
        for v in views:
            loader = Loader(cache, split, model.config, train=False, views=v, batch_size=batch_size,
                            device=model.devices[0], workers=workers)
            pr, labels = predict(model, loader)
            entry[v] = errors(pr, labels)
            total[v] = total[v].add_(pr) if v in total else pr
        out["checkpoints"].append(entry)
        del model, ck
    mean = {v: total[v].div_(len(paths)) for v in views}
    for v in views:
        out["ensemble"][v] = errors(mean[v], labels, per_image=True)
    return out, mean


def wrong_bits(probs: torch.Tensor, labels: torch.Tensor) -> str:
    """Top-1 per image, in the split's order: "1" wrong, "0" right (one character an image: 50 KB for
    ILSVRC's 50,000). What a paired comparison of two views or two nets over the same images reads."""
    return "".join("1" if w else "0" for w in (probs.argmax(1) != labels).tolist())


# ---------------------------------------------------------------- one step

FAITHFUL = Speed()


def train_step(forward, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               speed: Speed = FAITHFUL) -> torch.Tensor:
    """One SGD step: forward, softmax cross-entropy (§3.5), backward, the
    optimizer's update (§5's rule for `PaperSGD`). `forward` is the model or
    its compiled form. Returns [loss × n, wrong@1, wrong@5, n] as float64 on the
    logits' device, without waiting for a GPU to finish."""
    with speed.autocast(x.device):
        logits = forward(speed.inputs(x))
    y = y.to(logits.device, non_blocking=True)
    loss = F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    wrong = topk_wrong_counts(logits.detach(), y).double()
    n = torch.full((1,), float(len(y)), dtype=torch.float64, device=wrong.device)
    return torch.cat([loss.detach().double().reshape(1) * len(y), wrong, n])


class _StepStats:
    """One step's `train_step` numbers, copied to the host without waiting for
    the GPU and read one step later, so the host never stalls the GPU mid-step:
    it queues step s+1 while step s finishes. On the CPU, a plain tensor. Read
    before every checkpoint, so no non-finite step is ever saved."""

    def __init__(self, stats: torch.Tensor, step: int, batch: int, samples: torch.Tensor):
        self.step, self.batch, self.samples, self.event = step, batch, samples, None
        if stats.is_cuda:
            self.host = torch.empty(stats.shape, dtype=stats.dtype, pin_memory=True)
            self.host.copy_(stats, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record(torch.cuda.current_stream(stats.device))
        else:
            self.host = stats

    def read(self) -> list[float]:
        if self.event is not None:
            self.event.synchronize()
        return self.host.tolist()


# ---------------------------------------------------------------- a run

@dataclass(frozen=True)
class TrainOptions:
    """How a run is carried out; what is learned is the AlexNetConfig.
    `python -m alexnet.train --help` describes each as a flag."""
    cache: str | Path  # a prepared dataset (python -m tools.prepare)
    run_dir: str | Path  # checkpoints, log.jsonl, config.json
    devices: tuple | None = None  # tower devices, resolved once by the caller (None: what exists)
    workers: int | None = None  # loader processes (None: the cores, shared among this node's replicas)
    checkpoint_minutes: float = 15.0  # also checkpoint mid-epoch this often
    checkpoint_epochs: int = 1  # checkpoint at the end of every N-th epoch (and of the last, and when
    # checkpoint_minutes have passed since the last checkpoint): N > 1 for epochs of seconds
    checkpoint_steps: int = 0  # also checkpoint every N steps (0: off)
    keep: int = 3  # checkpoints kept
    max_steps: int = 0  # stop after this many steps in total (0: no limit)
    train_batches: int = 0  # only the first N batches of each epoch's shuffled order (0: all)
    progress: bool = True  # progress bar on stderr
    fast: bool = False  # bf16 autocast, channels-last, TF32, torch.compile: NOT bit-faithful
    compile: bool = True  # with fast: torch.compile
    tower_streams: bool = False  # both towers on one GPU: one CUDA stream per tower
    tensorboard: bool = False  # also write TensorBoard scalars to <run_dir>/tb
    resume: str | Path | None = None  # start from this checkpoint when it is newer than the run directory's
    print_freq: int = 0  # a progress line every N steps when stderr is not a terminal (0: none)
    init_from: str | Path | None = None  # a fresh run starts from this checkpoint's weights, with a fresh fc8
    resident: bool | None = None  # each split decoded once into device memory (None: on a GPU, when it fits;
    # the same batches either way: alexnet/data/loader.py)
    decoder: str = "cpu"  # a GPU run's JPEG decoder: "cpu" (the loader's workers) or "gpu" (nvJPEG)
    log_steps: bool = False  # one line per step in <run_dir>/steps.jsonl: loss, ε, per-layer maxima and
    # gradient norms (alexnet/diagnostics.py); reads each step's numbers at once, so a GPU waits for it

    PATHS = ("cache", "run_dir", "resume", "init_from")

    def to_dict(self) -> dict:
        """As JSON holds it (paths and devices as strings): what a subprocess or torchrun job is
        given whole (`alexnet.train --options`), and what config.json records."""
        d = dataclasses.asdict(self)
        d.update({k: str(d[k]) for k in self.PATHS if d[k] is not None})
        d["devices"] = None if self.devices is None else [str(x) for x in self.devices]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown train options {unknown}: written by another version of this code?")
        return cls(**{**d, "devices": None if d.get("devices") is None else tuple(d["devices"])})


class Trainer:
    """One run: the model, §5's optimizer and schedule, the loaders, and the
    state a checkpoint holds. Raises ValueError before any file is written
    when the options cannot work."""

    def __init__(self, cfg: AlexNetConfig, opts: TrainOptions, cache: Cache | None = None,
                 dist: distributed.Dist | None = None):
        self.cfg, self.opts = cfg, opts
        self.dist = dist or distributed.Dist()
        self.devices = resolve_devices(opts.devices)
        self.run_dir = Path(opts.run_dir)
        cache = cache if cache is not None else Cache(opts.cache)
        # what a checkpoint needs to classify a new image (alexnet.predict, tools.export)
        self.dataset = {"mean": torch.from_numpy(cache.mean.astype(np.float32)), "classes": cache.classes}
        if cfg.batch_size % self.dist.world_size:
            raise ValueError(f"--batch-size {cfg.batch_size} is not divisible by "
                             f"{self.dist.world_size} processes")
        self.speed = Speed(fast=opts.fast, compile=opts.compile)
        self.backend = self.speed.setup()
        torch.manual_seed(cfg.seed)  # §5's initial weights: the same on every replica
        self.net = AlexNet(cfg, self.devices, tower_streams=opts.tower_streams)
        self.dropout_generators = [torch.Generator(t.device) for t in self.net.towers]  # seed_dropout
        for tower, g in zip(self.net.towers, self.dropout_generators):
            tower.drop6.generator = tower.drop7.generator = g
        self.speed.layout(self.net)  # before DDP, whose gradient buckets take the parameters' strides
        self.model = (torch.nn.parallel.DistributedDataParallel(self.net) if self.dist.active else self.net)
        self.forward = self.speed.forward_fn(self.model)
        self.opt = PaperSGD(param_groups(self.net, cfg), lr=cfg.lr, momentum=cfg.momentum,
                            weight_decay=cfg.weight_decay)
        self.schedule = make_schedule(cfg)
        # torchrun's replicas on one node share the cores, or each would start one worker per core
        workers = cores_each(self.dist.local_world_size) if opts.workers is None else opts.workers
        common = dict(seed=cfg.seed, device=self.devices[0], workers=workers, rank=self.dist.rank,
                      world_size=self.dist.world_size, resident=opts.resident, decoder=opts.decoder)
        self.train_loader = Loader(cache, "train", cfg, train=True, batch_size=cfg.batch_size,
                                   max_batches=opts.train_batches or None, **common)
        self.val_loader = Loader(cache, "val", cfg, train=False, batch_size=cfg.batch_size,
                                 views="center", **common)
        if opts.checkpoint_epochs < 1:
            raise ValueError(f"--checkpoint-epochs {opts.checkpoint_epochs}: must be at least 1")
        if len(self.train_loader) == 0:
            raise ValueError(f"{opts.cache}: {cache.size('train')} training images, fewer "
                             f"than one batch of {cfg.batch_size}; lower --batch-size")
        self.epoch, self.step, self.history = 0, 0, []
        self.seed_dropout()
        self.meters = self._new_meters()
        self.last_ckpt: Path | None = None
        self.last_save = time.time()  # the last checkpoint's time (or the start's): checkpoint_minutes
        self.stop_signal: int | None = None  # this process's SIGINT/SIGTERM
        self.stop_agreed = False  # several processes: some rank had a signal, known to all at the same step
        self.overdue_agreed = False  # several processes: rank 0's checkpoint is overdue, known likewise
        self.trained_longer: dict | None = None  # set by resume() for a finished run given more epochs
        self.tb = None
        if opts.tensorboard and self.dist.main:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ValueError("--tensorboard needs the tensorboard package: "
                                 "pip install tensorboard") from None
            self.tb = SummaryWriter(self.run_dir / "tb")
        # a fresh run's pre-trained weights (--init-from), checked before the run directory exists
        fresh = opts.init_from and not checkpoint.files(self.run_dir)
        self.init_path = self.initialize_from(opts.init_from) if fresh else None
        self.probe = LayerProbe(self.net) if opts.log_steps and self.dist.main else None
        self.step_log: StepLog | None = None  # opened by fit() once the run directory is this run's

    @staticmethod
    def _new_meters() -> dict:
        return {"loss": 0.0, "wrong1": 0, "wrong5": 0, "n": 0, "seconds": 0.0}  # n: the global batch's images

    # ---- state ----
    def state(self) -> dict:
        return {"model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                "schedule": self.schedule.state_dict(), "epoch": self.epoch, "step": self.step,
                "loader": self.train_loader.state_dict(), "meters": dict(self.meters),
                "history": list(self.history), "rng": checkpoint.rng_state(),
                "config": self.cfg.to_dict(), "code_version": checkpoint.code_version(),
                "fast": self.speed.fast, "mode": self.speed.label, "dataset": self.dataset,
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def _start_from(self) -> tuple[Path | None, dict | None]:
        """The checkpoint to resume: the run directory's newest, or opts.resume's when that is
        further along (a rerun of a command with --resume continues from its own checkpoints)."""
        path, ck = checkpoint.latest(self.run_dir)
        if not self.opts.resume:
            return path, ck
        given, gck = checkpoint.read(self.opts.resume)
        if gck is None:
            raise ValueError(f"--resume {self.opts.resume}: no readable checkpoint there")
        if ck is not None and ck["step"] >= gck["step"]:
            if self.dist.main:
                print(f"--resume {given} (step {gck['step']}) ignored: {path} is at step {ck['step']}",
                      file=sys.stderr)
            return path, ck
        return given, gck

    def _check_same_run(self, path: Path, ck: dict) -> dict | None:
        """Resume only the run this config describes; a run may be trained longer
        (`epochs` raised, nothing else changed) when its ε schedule so far is what
        the longer run's would have been (`schedule.same_course`): the result is
        then bit for bit the longer run trained from the start. Returns None for the
        same run, and for a run trained longer what config.json records of it."""
        was_cfg = AlexNetConfig.from_dict(ck["config"])
        was, now = was_cfg.to_dict(), self.cfg.to_dict()
        diff = was_cfg.differences(self.cfg)
        if not diff:
            return None
        if set(diff) == {"epochs"} and now["epochs"] >= ck["epoch"]:
            if same_course(was_cfg, self.cfg, ck["epoch"]):
                if self.dist.main:
                    print(f"{path}: a run of {was['epochs']} epochs, trained on to {now['epochs']} "
                          f"(its ε schedule for the first {ck['epoch']} epochs is the same at both lengths)",
                          file=sys.stderr)
                return {"from_epochs": was["epochs"], "to_epochs": now["epochs"], "at_epoch": ck["epoch"],
                        "code_version": checkpoint.code_version()}
            raise ValueError(f"{path} holds a {was['epochs']}-epoch run whose ε schedule "
                             f"({was['lr_schedule']}) would have differed at {now['epochs']} "
                             f"epochs within its first {ck['epoch']}; train the longer run from "
                             "the start in another --run-dir")
        raise ValueError(f"{path} holds a run with another config (checkpoint vs now: {diff}); "
                         "use another --run-dir, or the same flags as that run")

    def resume(self) -> bool:
        path, ck = self._start_from()
        distributed.agree_on_start(self.dist, None if ck is None else ck["step"], path, self.run_dir)
        if ck is None:
            return False
        self.trained_longer = self._check_same_run(path, ck)
        if ck.get("fast", False) != self.speed.fast:
            raise ValueError(f"{self.run_dir} holds a run trained in mode "
                             f"{ck.get('mode', 'faithful')!r}; resume it "
                             f"{'with' if ck.get('fast') else 'without'} --fast, or use another --run-dir")
        self.load_state(ck)
        self.last_ckpt = path
        if self.dist.main:
            print(f"resumed from {path} (epoch {self.epoch}, step {self.step})", file=sys.stderr)
        return True

    def load_state(self, ck: dict) -> None:
        """A checkpoint's weights, velocities, schedule, loader position, counters and RNG: where its run
        was. resume() checks first that the checkpoint is this config's run; a study that continues a run
        under a changed config (reproduce/recipe.py) calls this alone."""
        self.net.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.schedule.load_state_dict(ck["schedule"])
        self.train_loader.load_state_dict(ck["loader"])
        self.epoch, self.step, self.history = ck["epoch"], ck["step"], ck["history"]
        self.meters = ck["meters"]
        checkpoint.set_rng_state(ck["rng"])  # rank 0's; dropout is seeded per step (seed_dropout)

    def initialize_from(self, source) -> Path:
        """A fresh run's weights from another run's checkpoint (file or run directory), every
        layer but fc8, which stays freshly initialized for this dataset's classes (1 CNN*:
        pre-trained on Fall 2011, fine-tuned on ILSVRC-2012). Read with weights_only=True."""
        path, ck = checkpoint.read(source)
        if ck is None:
            raise ValueError(f"--init-from {source}: no readable checkpoint there")
        own, theirs = self.net.state_dict(), ck["model"]
        keep = [k for k in own if not k.startswith("fc8.")]
        wrong = [k for k in keep if k not in theirs or theirs[k].shape != own[k].shape]
        wrong += [k for k in theirs if not k.startswith("fc8.") and k not in own]  # layers this net lacks
        if wrong:
            raise ValueError(f"--init-from {path}: its network differs from this one at "
                             f"{', '.join(wrong[:3])}{' …' if len(wrong) > 3 else ''}; pre-train with the "
                             "same layers (e.g. --extra-conv6 on both runs)")
        self.net.load_state_dict({**own, **{k: theirs[k] for k in keep}})
        if self.dist.main:
            print(f"initialized from {path} (epoch {ck.get('epoch')}): every layer but fc8", file=sys.stderr)
        return path

    def write_config(self, resumed_from: Path | None = None, init_from: Path | None = None) -> None:
        """<run_dir>/config.json: what a fresh run was started with; and
        <run_dir>/conv1_init.npy, the initial conv1 kernels (Figure 3 shows what training changed).
        A run started from another run's checkpoint (--resume) takes that run's conv1_init.npy."""
        if not self.dist.main:
            return
        if resumed_from is None:
            atomic_write(self.run_dir / CONV1_INIT, lambda f: np.save(f, self.net.conv1_kernels().numpy()))
        elif (Path(resumed_from).parent / CONV1_INIT).exists():
            shutil.copy(Path(resumed_from).parent / CONV1_INIT, self.run_dir / CONV1_INIT)
        write_text(self.run_dir / "config.json", json.dumps(
            {"config": self.cfg.to_dict(), "cache": str(self.opts.cache),
             "resumed_from": str(resumed_from) if resumed_from else None,
             "init_from": str(init_from) if init_from else None,
             "code_version": checkpoint.code_version(), "host": socket.gethostname(),
             "devices": [str(d) for d in self.devices], "world_size": self.dist.world_size,
             "mode": self.speed.label, "backend": self.backend, "options": self.opts.to_dict()}, indent=1))

    def record_trained_longer(self) -> None:
        """config.json of a run trained longer: the longer config, and when it was lengthened."""
        path = self.run_dir / "config.json"
        if not self.dist.main or not path.exists():
            return
        d = json.loads(path.read_text())
        d["config"] = self.cfg.to_dict()
        d["trained_longer"] = d.get("trained_longer", []) + [self.trained_longer]
        write_text(path, json.dumps(d, indent=1))

    def save(self, weights: bool = True) -> None:
        """A checkpoint and the log; with weights=False the log alone (an epoch whose checkpoint
        is not due: a later one, resumed from an earlier checkpoint, rewrites it)."""
        if self.dist.main:
            if weights:
                self.last_ckpt = checkpoint.save(self.run_dir, self.state(), keep=self.opts.keep)
            write_text(self.run_dir / "log.jsonl", "".join(json.dumps(h) + "\n" for h in self.history))
        if weights:
            self.last_save = time.time()
            self.overdue_agreed = False

    # ---- loop ----
    def checkpoint_overdue(self) -> bool:
        """--checkpoint-minutes have passed since the last checkpoint (or the start)."""
        return time.time() - self.last_save > 60 * self.opts.checkpoint_minutes

    def overdue(self) -> bool:
        """A checkpoint is overdue: by this process's clock, or under torchrun by rank 0's as every rank
        read it (flags)."""
        return self.overdue_agreed if self.dist.active else self.checkpoint_overdue()

    def flags(self) -> list[float]:
        """Under torchrun, what each step's all-reduced numbers carry besides the loss and errors:
        whether this rank had a signal (summed: any rank's), and whether a checkpoint is overdue by
        rank 0's clock (the one that writes it). Every rank reads them at the same step, so none
        stops, saves or raises on a non-finite loss a step before the others and leaves them waiting
        in a collective (each rank's own clock used to decide `due`, and with --log-steps rank 0 read
        each step at once, the others a step later)."""
        return [float(self.stop_signal is not None), float(self.dist.main and self.checkpoint_overdue())]

    def max_steps_reached(self) -> bool:
        return bool(self.opts.max_steps) and self.step >= self.opts.max_steps

    def stop_requested(self) -> bool:
        """A signal arrived: in one process, this one's; under torchrun, any rank's, as the ranks agree
        (each step's all-reduced numbers carry every rank's flag, and the epoch's end asks them all), so
        every rank stops after the same step and none waits in a collective that the others left."""
        return self.stop_agreed if self.dist.active else self.stop_signal is not None

    def should_stop(self) -> bool:
        """A signal arrived or max_steps is reached: checkpoint and leave the loop."""
        return self.stop_requested() or self.max_steps_reached()

    def validate(self) -> dict:
        probs, labels = predict(self.net, self.val_loader)
        wrong = topk_wrong(probs, labels)
        w1, w5, n = distributed.all_sum([wrong[1], wrong[5], len(labels)], self.devices[0])
        return {"top1": w1 / n, "top5": w5 / n, "n": int(n)}

    def prepare_epoch(self) -> None:
        """The loader at this epoch (its position kept when resuming mid-epoch), its lighting, train mode."""
        if self.train_loader.epoch != self.epoch:
            self.train_loader.set_epoch(self.epoch)
        self.train_loader.lighting = self.schedule.lighting(self.epoch) and self.cfg.pca_lighting
        self.model.train()

    def record_nonfinite(self, pending: "_StepStats", loss: float) -> None:
        """<run_dir>/nonfinite.json: the step, its batch (epoch, index, sample ids) and the last good
        checkpoint; `python -m tools.replay RUN_DIR` rebuilds that batch and replays the step."""
        if not self.dist.main:
            return
        cache = self.train_loader.cache
        ids = [int(i) for i in pending.samples]
        write_text(self.run_dir / NONFINITE, json.dumps({
            "step": pending.step, "epoch": self.epoch + 1, "batch": pending.batch, "loss": repr(loss),
            "samples": ids, "names": [cache.names("train")[i] for i in ids], "seed": self.cfg.seed,
            "last_good_checkpoint": str(self.last_ckpt) if self.last_ckpt else None,
            "devices": [str(d) for d in self.devices], "mode": self.speed.label,
            "code_version": checkpoint.code_version()}, indent=1))

    def seed_dropout(self) -> None:
        """The coming step's dropout masks (§4.2): each tower draws from its own generator, on its own
        device, seeded from (seed, tower, rank, step). So the two towers' masks are independent on any
        layout (two GPUs, one, the CPU), every replica draws its own, and a resumed run draws what it
        would have drawn uninterrupted, whatever the global RNG holds."""
        for tower, g in enumerate(self.dropout_generators):
            g.manual_seed(dropout_seed(self.cfg.seed, tower, self.dist.rank, self.step))

    def warm_up(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """This step's ε under `lr_warmup_epochs` (a function of the step: resumed or not); §5: nothing.
        `optimizer`: another than the run's, set as the run's is (tools.replay's float64 twin)."""
        if self.cfg.lr_warmup_epochs:
            factor = warmup(self.cfg, self.step, len(self.train_loader))
            apply(self.schedule, optimizer or self.opt, self.cfg, self.epoch, factor)

    def log_step(self, stats: torch.Tensor, batch: int) -> None:
        """One line of steps.jsonl (--log-steps): read now, so on a GPU the host waits for this step."""
        loss_sum, _, _, n = stats[:4].tolist()  # under torchrun the flags follow (train_one_epoch)
        self.step_log.write({"step": self.step, "epoch": self.epoch + 1, "batch": batch, "loss": loss_sum / n,
                             "lr": next(g["lr"] for g in self.opt.param_groups if g["name"] == "weight"),
                             **self.probe.row()})

    def train_one_epoch(self) -> None:
        """Train from the loader's position to the end of the epoch, or until
        should_stop(); checkpoints mid-epoch when due."""
        cfg, m, opts = self.cfg, self.meters, self.opts
        loader = self.train_loader
        self.prepare_epoch()
        bar = progress_bar(total=len(loader), initial=loader.position, unit="batch", leave=False,
                           desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                           enabled=self.dist.main and opts.progress)
        t0 = time.perf_counter()
        pending: _StepStats | None = None
        recent: collections.deque = collections.deque(maxlen=8)  # (step, loss): what led up to a failure
        pending_x = None  # the unread step's input batch (one batch kept alive one step longer)

        def settle() -> None:  # account for the last step whose numbers are not read yet
            nonlocal pending
            if pending is None:
                return
            loss_sum, wrong1, wrong5, n, *flags = pending.read()  # on a GPU: waits for the step
            distributed.check_peers()  # NCCL: a failed all-reduce's numbers are not the run's
            if flags:  # under torchrun: any rank's signal, rank 0's clock (see `flags` below)
                self.stop_agreed |= flags[0] > 0
                self.overdue_agreed |= flags[1] > 0
            if not math.isfinite(loss_sum):
                self.record_nonfinite(pending, loss_sum / n)
                before = ", ".join(f"{s} {v:.3f}" for s, v in recent) or "none in this epoch"
                x = pending_x.float()
                finite = torch.isfinite(x)
                batch = (f"finite, from {x.min().item():.1f} to {x.max().item():.1f}" if finite.all()
                         else f"{int((~finite).sum())} non-finite values")
                raise NonFiniteLoss(f"loss is {loss_sum / n} at epoch {self.epoch + 1}, step "
                                    f"{pending.step}; the steps before (step loss): {before}; that "
                                    f"step's input batch: {batch}")
            recent.append((pending.step, loss_sum / n))
            m["loss"] += loss_sum
            m["wrong1"] += int(wrong1)
            m["wrong5"] += int(wrong5)
            m["n"] += int(n)
            bar.set_postfix(loss=f"{m['loss'] / m['n']:.3f}", err=f"{m['wrong1'] / m['n']:.3f}",
                            img_s=f"{m['n'] / (m['seconds'] + time.perf_counter() - t0):.1f}", refresh=False)
            pending = None

        for x, y in loader:
            self.seed_dropout()
            self.warm_up()
            stats = train_step(self.forward, self.opt, x, y, self.speed)
            if self.dist.active:  # the flags every rank decides on, summed with the numbers
                stats = torch.cat([stats, stats.new_tensor(self.flags())])
            stats = distributed.sum_over_ranks(stats, self.devices[0])
            self.step += 1
            batch = (loader.position or len(loader)) - 1  # the loader has moved past it
            settle()  # the previous step's numbers, while this one runs
            pending, pending_x = _StepStats(stats, self.step, batch, loader.batch_indices(batch)[0]), x
            if opts.log_steps:  # read now, on every rank: a non-finite step stops the run before the next
                if self.step_log is not None:
                    self.log_step(stats, batch)
                settle()
            bar.update()
            printing = opts.print_freq and self.dist.main and not sys.stderr.isatty()
            if printing and self.step % opts.print_freq == 0:
                print(f"epoch {self.epoch + 1}/{cfg.epochs} batch "
                      f"{loader.position or len(loader)}/{len(loader)} step {self.step}: train loss "
                      f"{m['loss'] / max(m['n'], 1):.4f} err {m['wrong1'] / max(m['n'], 1):.4f} (this epoch, "
                      "to the step before)", file=sys.stderr, flush=True)
            # Both decided from numbers every rank has read at the same step (settle), never from one
            # rank's own clock or signal: the ranks then read, save and stop at the same step.
            due = ((opts.checkpoint_steps and self.step % opts.checkpoint_steps == 0)
                   or self.overdue())
            stop = self.should_stop()
            if stop or due:
                settle()
                m["seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                if loader.position != 0:  # mid-epoch; the epoch end saves on its own
                    self.save()
                if stop:
                    bar.close()
                    return
        settle()
        bar.close()
        m["seconds"] += time.perf_counter() - t0

    def run(self) -> int:
        """Epochs until cfg.epochs; 0 when done or max_steps is reached,
        EXIT_INTERRUPTED after a signal (a checkpoint was written first)."""
        cfg = self.cfg
        while self.epoch < cfg.epochs:
            if self.max_steps_reached():
                return 0
            lrs = apply(self.schedule, self.opt, cfg, self.epoch)
            self.train_one_epoch()
            if self.train_loader.position != 0:  # stopped mid-epoch (signal or max_steps)
                return EXIT_INTERRUPTED if self.stop_requested() else 0
            val = self.validate()
            if self.dist.active:  # a signal during the epoch's last step or its validation: every rank's
                flags = distributed.all_sum([float(self.stop_signal is not None)], self.devices[0])
                self.stop_agreed |= flags[0] > 0
            note = self.schedule.end_epoch(self.epoch, val["top1"])
            m = self.meters
            self.history.append({
                "epoch": self.epoch + 1, "step": self.step,
                "train_loss": m["loss"] / m["n"], "train_top1": m["wrong1"] / m["n"],
                "train_top5": m["wrong5"] / m["n"],
                "val_top1": val["top1"], "val_top5": val["top5"], "val_images": val["n"],
                "lr": lrs, "stability": cfg.stability,
                "pca_lighting": self.train_loader.lighting is not False,
                "images_per_s": round(m["n"] / max(m["seconds"], 1e-9), 2), "seconds": round(m["seconds"], 2),
                "devices": [str(d) for d in self.devices], "world_size": self.dist.world_size,
                "mode": self.speed.label, "schedule_note": note})
            h = self.history[-1]
            if self.tb is not None:
                for key in ("train_loss", "train_top1", "train_top5", "val_top1", "val_top5", "images_per_s"):
                    self.tb.add_scalar(key, h[key], h["epoch"])
                self.tb.add_scalar("lr", lrs["weight"], h["epoch"])
                self.tb.flush()
            if self.dist.main:
                print(f"epoch {h['epoch']}/{cfg.epochs}: train loss {h['train_loss']:.4f} "
                      f"err {h['train_top1']:.4f}/{h['train_top5']:.4f}  val err {h['val_top1']:.4f}/"
                      f"{h['val_top5']:.4f}  ε {lrs['weight']:g}  {h['images_per_s']:.1f} img/s"
                      + (f"  [{note}]" if note else ""), file=sys.stderr)
            self.epoch += 1
            self.meters = self._new_meters()
            self.save(weights=self.epoch % self.opts.checkpoint_epochs == 0 or self.epoch == cfg.epochs
                      or self.stop_requested() or self.max_steps_reached()
                      or self.overdue())
            if self.stop_requested():
                return EXIT_INTERRUPTED
        return 0


@contextlib.contextmanager
def _stop_on_signals(trainer: Trainer):
    """SIGINT/SIGTERM: finish the step, write a checkpoint, leave; the previous handlers come back after."""
    def on_signal(signum, frame):
        trainer.stop_signal = signum
        print(f"\nsignal {signal.Signals(signum).name}: finishing this step and writing a checkpoint ...",
              file=sys.stderr)
    before = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def fit(cfg: AlexNetConfig, opts: TrainOptions, cache: Cache | None = None,
        dist: distributed.Dist | None = None) -> int:
    """Train a run to cfg.epochs, resuming from the newest valid checkpoint in
    opts.run_dir. Returns 0 when done (or at max_steps), EXIT_INTERRUPTED after
    SIGINT/SIGTERM (a checkpoint was written). Raises ValueError for options
    that cannot work (before the run directory is created) or a run directory
    holding another run; checkpoint.RunLocked when another process holds it;
    NonFiniteLoss (naming the last good checkpoint); checkpoint.DiskFull."""
    trainer = Trainer(cfg, opts, cache, dist)
    lock = checkpoint.RunLock(trainer.run_dir) if trainer.dist.main else contextlib.nullcontext()
    with lock:  # the run directory is created only once the options are good
        if not trainer.resume():
            trainer.write_config(init_from=trainer.init_path)
        elif not (trainer.run_dir / "config.json").exists():  # --resume into a new run directory
            trainer.write_config(resumed_from=trainer.last_ckpt)
        if trainer.trained_longer:
            trainer.record_trained_longer()
        if trainer.dist.main:
            print(f"mode: {trainer.speed.label}", file=sys.stderr)
        if trainer.probe is not None:
            trainer.step_log = StepLog(trainer.run_dir, resumed_step=trainer.step)
        with _stop_on_signals(trainer):
            try:
                code = trainer.run()
            except ValueError as e:  # a fault in this code, not in the options (checked above): no exit 2
                raise RuntimeError(f"training failed at step {trainer.step}: {e!r}") from e
            except NonFiniteLoss as e:
                where = trainer.last_ckpt or "none yet (the run diverged before its first checkpoint)"
                raise NonFiniteLoss(f"{e}; stopped. Last good checkpoint: {where}. The batch is recorded in "
                                    f"{trainer.run_dir / NONFINITE}: `python -m tools.replay "
                                    f"{trainer.run_dir}` replays it in float64 beside the run's own "
                                    "arithmetic. Lower --lr, or check the data.")
            finally:
                if trainer.step_log is not None:
                    trainer.step_log.close()
    if code == EXIT_INTERRUPTED and trainer.dist.main:
        print(f"interrupted; checkpoint {trainer.last_ckpt}. Resume with the same command.", file=sys.stderr)
    return code
