"""Train AlexNet with §5's SGD and schedule; resumable, one JSON line per epoch.

    python -m alexnet.train --cache cache/synthetic --run-dir runs/1cnn
    python -m alexnet.train --cache cache/imagenet --run-dir runs/1cnn --devices cuda:0,cuda:1
    python -m alexnet.train ... --profile cuda-convnet --epochs 30 --no-lrn     # an ablation
    python -m alexnet.train ... --fast    # bf16 + channels-last + torch.compile: faster, NOT bit-faithful
    torchrun --nproc_per_node=4 -m alexnet.train --cache cache/imagenet --run-dir runs/1cnn   # 8 GPUs

Restarting the same command resumes from the newest valid checkpoint in
--run-dir (a corrupt or truncated one is skipped with a warning). On CPU with
a fixed seed a run killed anywhere and resumed ends with bit-identical weights.
Checkpoints: every epoch and every --checkpoint-minutes; the last --keep are kept.
Log: <run-dir>/log.jsonl, one line per epoch (train loss, top-1/top-5 error,
validation 1-crop top-1/top-5, ε per group, images/s, seconds, devices).
Exit status: 0 done; 2 bad arguments, or the run directory is in use by
another process; 3 non-finite loss; 4 disk full (the previous checkpoint is
intact; the message says how much space is needed); 130 interrupted (a
checkpoint was written first).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import signal
import socket
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import checkpoint, distributed
from .atomic import write_text
from .config import PROFILES, AlexNetConfig
from .data.loader import Loader
from .engine import predict, topk_wrong, topk_wrong_counts
from .model import AlexNet
from .optim import PaperSGD, param_groups
from .progress import bar as progress_bar
from .schedule import apply, make_schedule
from .speed import Speed

EXIT_NONFINITE, EXIT_DISK_FULL, EXIT_INTERRUPTED = 3, 4, 130


class NonFiniteLoss(RuntimeError):
    pass


class _StepStats:
    """One step's [loss × n, wrong@1, wrong@5, n], copied to the host without
    waiting for the GPU and read one step later, so the host never stalls the
    GPU mid-step: it queues step s+1 while step s finishes. On the CPU, a plain
    tensor. Read before every checkpoint, so no non-finite step is ever saved."""

    def __init__(self, stats: torch.Tensor, step: int):
        self.step, self.event = step, None
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


def add_config_args(ap: argparse.ArgumentParser) -> None:
    """Flags that mirror AlexNetConfig (defaults come from the profile)."""
    g = ap.add_argument_group("model and learning (default: the profile's value)")
    g.add_argument("--profile", choices=PROFILES, default="paper",
                   help="'paper' (the text) or 'cuda-convnet' (the released 2012 code)")
    g.add_argument("--epochs", type=int, help="epochs (paper: 90); schedules scale to shorter runs")
    g.add_argument("--batch-size", type=int, help="global batch (paper: 128)")
    g.add_argument("--lr", type=float, help="initial ε (paper: 0.01)")
    g.add_argument("--seed", type=int, help="seed for init, shuffling, augmentation, dropout")
    g.add_argument("--towers", type=int, choices=(1, 2), help="2, or 1 = footnote 2's one-GPU net")
    g.add_argument("--crop-size", type=int, choices=(224, 227), help="input crop (paper: 224)")
    g.add_argument("--no-lrn", dest="lrn", action="store_false", default=None, help="ablation: no LRN (§3.3)")
    g.add_argument("--pool-kernel", type=int, choices=(2, 3), help="3 overlapping (§3.4) or 2")
    g.add_argument("--activation", choices=("relu", "tanh"), help="relu (§3.1) or tanh")
    g.add_argument("--dropout", type=float, help="dropout p on fc6/fc7 (paper: 0.5; 0 = ablation)")
    g.add_argument("--no-pca-lighting", dest="pca_lighting", action="store_false", default=None,
                   help="ablation: no PCA colour augmentation (§4.1)")
    g.add_argument("--extra-conv6", action="store_true", default=None, help="1 CNN*: a sixth conv layer")
    g.add_argument("--num-classes", type=int, help="default: the dataset's class count")


def config_from_args(args, num_classes: int) -> AlexNetConfig:
    fields = {f.name for f in dataclasses.fields(AlexNetConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None and k != "profile"}
    overrides.setdefault("num_classes", num_classes)
    return AlexNetConfig.from_profile(args.profile, **overrides)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m alexnet.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, help="a prepared dataset (python -m tools.prepare)")
    ap.add_argument("--run-dir", required=True, help="checkpoints and log.jsonl go here; rerun to resume")
    ap.add_argument("--devices", help="tower devices, e.g. cuda:0,cuda:1 | cuda:0 | cpu (default: what exists)")
    ap.add_argument("--workers", type=int, default=None, help="CPU loader processes (default: all cores)")
    ap.add_argument("--checkpoint-minutes", type=float, default=15.0, help="also checkpoint mid-epoch this often")
    ap.add_argument("--checkpoint-steps", type=int, default=0, help="also checkpoint every N steps (0: off)")
    ap.add_argument("--keep", type=int, default=3, help="checkpoints kept")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps in total (0: no limit)")
    ap.add_argument("--train-batches", type=int, default=0,
                    help="short runs: use only the first N batches of each epoch's shuffled order (0: all)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--fast", action="store_true",
                    help="fast mode: bf16 autocast, channels-last, TF32, torch.compile; NOT bit-faithful, and "
                         "labelled so in the log, checkpoints and evaluations (see alexnet/speed.py)")
    ap.add_argument("--no-compile", action="store_true", help="with --fast: skip torch.compile")
    ap.add_argument("--tower-streams", action="store_true",
                    help="both towers on one GPU: one CUDA stream per tower, so they overlap (same arithmetic)")
    ap.add_argument("--tensorboard", action="store_true",
                    help="also write TensorBoard scalars to <run-dir>/tb (needs: pip install tensorboard)")
    add_config_args(ap)
    args = ap.parse_args(argv)
    for name, low in (("epochs", 1), ("batch_size", 1), ("workers", 0), ("keep", 1), ("num_classes", 2),
                      ("train_batches", 0), ("max_steps", 0)):
        v = getattr(args, name, None)
        if v is not None and v < low:
            ap.error(f"--{name.replace('_', '-')}={v}: must be at least {low}")
    if args.lr is not None and not (0 < args.lr < math.inf):
        ap.error(f"--lr={args.lr}: must be a positive number")
    return ap, args


class Trainer:
    def __init__(self, args, cfg: AlexNetConfig, dist: distributed.Dist, devices, cache):
        self.args, self.cfg, self.dist, self.devices = args, cfg, dist, devices
        self.run_dir = Path(args.run_dir)
        if cfg.batch_size % dist.world_size:
            raise ValueError(f"--batch-size {cfg.batch_size} is not divisible by {dist.world_size} processes")
        self.speed = Speed(fast=args.fast, compile=not args.no_compile)
        self.speed.setup(devices)
        torch.manual_seed(cfg.seed)
        self.net = AlexNet(cfg, devices, tower_streams=args.tower_streams)
        self.model = (torch.nn.parallel.DistributedDataParallel(self.net) if dist.active else self.net)
        self.forward = self.speed.forward_fn(self.model)
        self.opt = PaperSGD(param_groups(self.net, cfg), lr=cfg.lr, momentum=cfg.momentum,
                            weight_decay=cfg.weight_decay)
        self.schedule = make_schedule(cfg)
        common = dict(seed=cfg.seed, device=devices[0], workers=args.workers, rank=dist.rank,
                      world_size=dist.world_size)
        self.train_loader = Loader(cache, "train", cfg, train=True, batch_size=cfg.batch_size,
                                   max_batches=args.train_batches or None, **common)
        self.val_loader = Loader(cache, "val", cfg, train=False, batch_size=cfg.batch_size,
                                 views="center", **common)
        if len(self.train_loader) == 0:
            raise ValueError(f"{args.cache}: {self.train_loader.cache.size('train')} training images, fewer "
                             f"than one batch of {cfg.batch_size}; lower --batch-size")
        self.epoch, self.step, self.history = 0, 0, []
        self.meters = self._new_meters()
        self.last_ckpt: Path | None = None
        self.stop_signal: int | None = None
        self.tb = None
        if args.tensorboard and dist.main:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
            self.tb = SummaryWriter(self.run_dir / "tb")

    @staticmethod
    def _new_meters() -> dict:
        return {"loss": 0.0, "wrong1": 0, "wrong5": 0, "n": 0, "seconds": 0.0, "images": 0}

    # ---- state ----
    def state(self) -> dict:
        return {"model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                "schedule": self.schedule.state_dict(), "epoch": self.epoch, "step": self.step,
                "loader": self.train_loader.state_dict(), "meters": dict(self.meters),
                "history": list(self.history), "rng": checkpoint.rng_state(),
                "config": self.cfg.to_dict(), "code_version": checkpoint.code_version(),
                "fast": self.speed.fast, "mode": self.speed.label,
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def resume(self) -> bool:
        path, ck = checkpoint.latest(self.run_dir)
        if ck is None:
            return False
        now = self.cfg.to_dict()
        if ck["config"] != now:
            diff = {k: (ck["config"].get(k), now.get(k)) for k in sorted(set(ck["config"]) | set(now))
                    if ck["config"].get(k) != now.get(k)}
            raise ValueError(f"{self.run_dir} holds a run with another config (checkpoint vs now: {diff}); "
                             "use another --run-dir, or the same flags as that run")
        if ck.get("fast", False) != self.speed.fast:
            raise ValueError(f"{self.run_dir} holds a run trained in mode {ck.get('mode', 'faithful')!r}; "
                             f"resume it {'with' if ck.get('fast') else 'without'} --fast, or use another --run-dir")
        self.net.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.schedule.load_state_dict(ck["schedule"])
        self.train_loader.load_state_dict(ck["loader"])
        self.epoch, self.step, self.history = ck["epoch"], ck["step"], ck["history"]
        self.meters = ck["meters"]
        checkpoint.set_rng_state(ck["rng"])
        self.last_ckpt = path
        if self.dist.main:
            print(f"resumed from {path} (epoch {self.epoch}, step {self.step})", file=sys.stderr)
        return True

    def save(self) -> None:
        if self.dist.main:
            self.last_ckpt = checkpoint.save(self.run_dir, self.state(), keep=self.args.keep)
            self._write_log()

    def _write_log(self) -> None:
        write_text(self.run_dir / "log.jsonl", "".join(json.dumps(h) + "\n" for h in self.history))

    # ---- loop ----
    def max_steps_reached(self) -> bool:
        return bool(self.args.max_steps) and self.step >= self.args.max_steps

    def should_stop(self) -> bool:
        """A signal arrived or --max-steps is reached: checkpoint and leave the loop."""
        return self.stop_signal is not None or self.max_steps_reached()

    def validate(self) -> dict:
        probs, labels = predict(self.net, self.val_loader)
        wrong = topk_wrong(probs, labels)
        w1, w5, n = distributed.all_sum([wrong[1], wrong[5], len(labels)], self.devices[0])
        return {"top1": w1 / n, "top5": w5 / n, "n": int(n)}

    def train_epoch(self) -> None:
        cfg, m = self.cfg, self.meters
        loader = self.train_loader
        if loader.epoch != self.epoch:
            loader.set_epoch(self.epoch)
        loader.lighting = self.schedule.lighting(self.epoch) and cfg.pca_lighting
        self.model.train()
        last_save = time.time()
        bar = progress_bar(total=len(loader), initial=loader.position, unit="batch", leave=False,
                           desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                           enabled=self.dist.main and not self.args.no_progress)
        t0 = time.perf_counter()
        pending: _StepStats | None = None

        def settle() -> None:  # account for the last step whose numbers are not read yet
            nonlocal pending
            if pending is None:
                return
            loss_sum, wrong1, wrong5, n = pending.read()
            if not math.isfinite(loss_sum):
                raise NonFiniteLoss(f"loss is {loss_sum / n} at epoch {self.epoch + 1}, step {pending.step}")
            m["loss"] += loss_sum
            m["wrong1"] += int(wrong1)
            m["wrong5"] += int(wrong5)
            m["n"] += int(n)
            m["images"] += int(n) * self.dist.world_size
            bar.set_postfix(loss=f"{m['loss'] / m['n']:.3f}", err=f"{m['wrong1'] / m['n']:.3f}",
                            img_s=f"{m['images'] / (m['seconds'] + time.perf_counter() - t0):.1f}", refresh=False)
            pending = None

        for x, y in loader:
            stats = self.train_step(x, y)
            self.step += 1
            settle()  # the previous step's numbers, while this one runs
            pending = _StepStats(stats, self.step)
            bar.update()
            due = ((self.args.checkpoint_steps and self.step % self.args.checkpoint_steps == 0)
                   or time.time() - last_save > 60 * self.args.checkpoint_minutes)
            if self.should_stop() or due:
                settle()
                m["seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                if loader.position != 0:  # mid-epoch; the epoch end saves on its own
                    self.save()
                last_save = time.time()
                if self.should_stop():
                    bar.close()
                    return
        settle()
        bar.close()
        m["seconds"] += time.perf_counter() - t0

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One SGD step on a batch; returns [loss × n, wrong@1, wrong@5, n]
        (float64, on devices[0]) without waiting for the GPU."""
        y = y.to(self.devices[0], non_blocking=True)
        with self.speed.autocast(self.devices[0]):
            logits = self.forward(self.speed.inputs(x))
        loss = F.cross_entropy(logits.float(), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        wrong = topk_wrong_counts(logits.detach(), y).double()
        n = torch.full((1,), float(len(y)), dtype=torch.float64, device=wrong.device)
        return torch.cat([loss.detach().double().reshape(1) * len(y), wrong, n])

    def run(self) -> int:
        cfg = self.cfg
        while self.epoch < cfg.epochs:
            if self.max_steps_reached():
                return 0
            lrs = apply(self.schedule, self.opt, cfg, self.epoch)
            self.train_epoch()
            if self.train_loader.position != 0:  # stopped mid-epoch (signal or --max-steps)
                return EXIT_INTERRUPTED if self.stop_signal is not None else 0
            val = self.validate()
            note = self.schedule.end_epoch(self.epoch, val["top1"])
            m = self.meters
            self.history.append({
                "epoch": self.epoch + 1, "step": self.step,
                "train_loss": m["loss"] / m["n"], "train_top1": m["wrong1"] / m["n"], "train_top5": m["wrong5"] / m["n"],
                "val_top1": val["top1"], "val_top5": val["top5"], "val_images": val["n"],
                "lr": lrs, "pca_lighting": self.train_loader.lighting is not False,
                "images_per_s": round(m["images"] / max(m["seconds"], 1e-9), 2), "seconds": round(m["seconds"], 2),
                "devices": [str(d) for d in self.devices], "world_size": self.dist.world_size,
                "mode": self.speed.label, "schedule_note": note})
            if self.tb is not None:
                for key in ("train_loss", "train_top1", "train_top5", "val_top1", "val_top5", "images_per_s"):
                    self.tb.add_scalar(key, self.history[-1][key], self.epoch + 1)
                self.tb.add_scalar("lr", lrs["weight"], self.epoch + 1)
                self.tb.flush()
            if self.dist.main:
                h = self.history[-1]
                print(f"epoch {h['epoch']}/{cfg.epochs}: train loss {h['train_loss']:.4f} "
                      f"err {h['train_top1']:.4f}/{h['train_top5']:.4f}  val err {h['val_top1']:.4f}/"
                      f"{h['val_top5']:.4f}  ε {lrs['weight']:g}  {h['images_per_s']:.1f} img/s"
                      + (f"  [{note}]" if note else ""), file=sys.stderr)
            self.epoch += 1
            self.meters = self._new_meters()
            self.save()
            if self.stop_signal is not None:
                return EXIT_INTERRUPTED
        return 0


def main(argv=None) -> int:
    ap, args = parse_args(argv)
    try:
        dist, devices = distributed.init(args.devices)
        from .data.cache import Cache
        cache = Cache(args.cache)
        cfg = config_from_args(args, num_classes=len(cache.classes))
        trainer = Trainer(args, cfg, dist, devices, cache)
    except ValueError as e:
        ap.error(str(e))
    lock = checkpoint.RunLock(args.run_dir) if dist.main else contextlib.nullcontext()
    try:
        with lock:  # the run directory is created only once the arguments are good
            return _train(ap, args, trainer, cfg, dist, devices)
    except checkpoint.RunLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _train(ap, args, trainer: Trainer, cfg: AlexNetConfig, dist, devices) -> int:
    try:
        resumed = trainer.resume()
    except ValueError as e:
        ap.error(str(e))
    if not resumed and dist.main:
        write_text(Path(args.run_dir) / "config.json", json.dumps(
            {"config": cfg.to_dict(), "cache": str(args.cache), "code_version": checkpoint.code_version(),
             "host": socket.gethostname(), "devices": [str(d) for d in devices], "world_size": dist.world_size,
             "mode": trainer.speed.label},
            indent=1))

    if dist.main:
        print(f"mode: {trainer.speed.label}", file=sys.stderr)

    def on_signal(signum, frame):
        trainer.stop_signal = signum
        print(f"\nsignal {signal.Signals(signum).name}: finishing this step and writing a checkpoint ...",
              file=sys.stderr)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        code = trainer.run()
    except NonFiniteLoss as e:
        where = trainer.last_ckpt or "none yet (the run diverged before its first checkpoint)"
        print(f"error: {e}; stopped. Last good checkpoint: {where}. Lower --lr, or check the data.",
              file=sys.stderr)
        code = EXIT_NONFINITE
    except checkpoint.DiskFull as e:
        print(f"error: {e.strerror}", file=sys.stderr)
        code = EXIT_DISK_FULL
    finally:
        distributed.shutdown()
    if code == EXIT_INTERRUPTED and dist.main:
        print(f"interrupted; checkpoint {trainer.last_ckpt}. Resume with the same command.", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
