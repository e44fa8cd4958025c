"""The compute plan: what `run_all` will train, how long it should take on this
machine, and the disk it needs. `run_all --dry-run` prints it and stops; every
real run prints it first.

Hours come from a measured training rate of the faithful step on this device:
the newest committed benchmark for it (`results/benchmarks/bench-*.json`,
`python -m tools.bench`), else a 30-second measurement made now. A training
image costs one step's share; a validation or feature image the forward pass's
share, from the same benchmark (`step/faithful` ÷ `step/forward`; a third, an
estimate, where the benchmark predates that measurement or none exists).
Each epoch ends with a centre-patch validation;
the final evaluation adds one pass (ten patches: ten more) over the validation
set. Figure 1's small net is not counted (minutes at most).
"""

from __future__ import annotations

import json
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from alexnet import checkpoint
from alexnet.config import AlexNetConfig
from alexnet.data.sources import UNIT_SIZE
from alexnet.engine import train_step
from alexnet.model import AlexNet
from alexnet.optim import PaperSGD, param_groups
from alexnet.placement import device_name
from alexnet.speed import Speed

FORWARD_SHARE = 1 / 3  # cost of a forward-only image relative to a training image, where none is measured
FEATURE_BYTES = 4096 * 4  # one image's float32 last hidden layer (Figure 4)
JPEG_BYTES = 26_000  # bytes per prepared 256×256 JPEG when no cache exists yet: the embedded set's cache
# each prepared shard's pixel sums (float64 3×256×256, alexnet/data/prepare.py)
SHARD_STATS_BYTES = 3 * 256 * 256 * 8


@dataclass
class RunCost:
    experiment: str
    run: str
    epochs: int
    batch: int
    images: int  # training images per epoch
    done: int  # epochs already trained (its newest checkpoint)
    hours: float  # what is left of it
    checkpoint_bytes: int


def _inner_tar_count(path: str, offset: int) -> int:
    """Files in a tar stored inside another tar at `offset`, counted from the headers alone."""
    with open(path, "rb") as f:
        f.seek(offset)
        with tarfile.open(fileobj=f, mode="r:") as inner:
            return sum(m.isfile() for m in inner)


def _unit_images(unit: tuple) -> int:
    kind = unit[0]
    if kind == "files":
        return len(unit[1])
    if kind == "tar_members":
        return len(unit[2])
    return _inner_tar_count(unit[1], unit[2])  # "inner_tar": one ILSVRC-2012 training class


def image_counts(plan) -> tuple[dict[str, int], str]:
    """Images per split, and where the counts come from."""
    if plan.synthetic:
        classes, train, val = plan.synthetic
        return {"train": classes * train, "val": classes * val}, "the embedded set's size"
    meta = plan.cache / "meta.json"
    if meta.exists():
        return {k: v["count"] for k, v in json.loads(meta.read_text())["splits"].items()}, f"{meta}"
    source = plan.listed  # real data: listed once by make_plan
    return ({split: sum(_unit_images(u) for u in units) for split, units in source.units.items()},
            f"the archive headers in {source.root}" if source.kind == "ilsvrc2012"
            else f"the file list of the ImageFolder {source.root}")


def shard_count(plan, counts: dict[str, int]) -> int:
    """The shards `prepare` will write: one per unit of the listed data; for the embedded set
    (ILSVRC-2012's layout) one per class for train and one per UNIT_SIZE images for the rest."""
    if plan.listed:
        return sum(len(units) for units in plan.listed.units.values())
    classes = plan.synthetic[0] if plan.synthetic else 0
    return classes + sum(-(-n // UNIT_SIZE) for split, n in counts.items() if split != "train")


def _benchmarks(device: torch.device, root: Path) -> list[tuple[str, dict, str]]:
    """(date, img_s, description) of every committed benchmark of this kind of device, oldest first."""
    name = device_name(device)
    found = []
    for path in (root / "results" / "benchmarks").glob("bench-*.json"):
        b = json.loads(path.read_text())
        if name in b.get("device", ""):
            found.append((b.get("date", ""), b.get("img_s", {}),
                          f"{path.name} ({b['device']}, batch {b.get('batch')})"))
    return sorted(found, key=lambda f: (f[0], f[2]))


def benchmark_rate(device: torch.device, root: Path, resident: bool = True) -> tuple[float, str] | None:
    """The newest committed benchmark's end-to-end faithful training rate for this kind of device:
    with the images decoded once into GPU memory (the embedded sets), or decoding every batch
    (`resident=False`: ILSVRC, too large for that; only GPU benchmarks measure both)."""
    found = [(rate, about) for _, img_s, about in _benchmarks(device, root)
             if (rate := (None if resident else img_s.get("e2e/train-decode"))
                 or img_s.get("e2e/train") or img_s.get("step/faithful"))]
    return found[-1] if found else None


def forward_share(device: torch.device, root: Path) -> tuple[float, str]:
    """A forward-only image's cost relative to a training image's: from the newest benchmark of this
    kind of device that measured both (step/faithful ÷ step/forward), else FORWARD_SHARE."""
    found = [(img_s["step/faithful"] / img_s["step/forward"], about)
             for _, img_s, about in _benchmarks(device, root)
             if img_s.get("step/forward") and img_s.get("step/faithful")]
    return found[-1] if found else (FORWARD_SHARE, "an estimate: no benchmark here measured step/forward")


def measured_rate(devices, batch: int, seconds: float = 30.0) -> tuple[float, str]:
    """Images/s of the faithful training step on these devices (in its backend switches: Speed.setup),
    timed for about `seconds`."""
    Speed().setup()
    cfg = AlexNetConfig(num_classes=1000, batch_size=batch)
    model = AlexNet(cfg, devices)
    opt = PaperSGD(param_groups(model, cfg), lr=cfg.lr)
    x = torch.randn(batch, 3, 224, 224, device=model.devices[0])
    y = torch.randint(0, 1000, (batch,), device=model.devices[0])
    train_step(model, opt, x, y).cpu()  # warm-up
    steps, t0 = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - t0 < seconds:
        stats = train_step(model, opt, x, y)
        steps += 1
    stats.cpu()  # wait for the device
    rate = steps * batch / (time.perf_counter() - t0)
    return rate, f"measured now for {time.perf_counter() - t0:.0f} s ({steps} steps of batch {batch})"


def checkpoint_bytes(num_classes: int, extra_conv6: bool = False) -> int:
    """A checkpoint's size: the weights and their momentum in float32 (the rest is small)."""
    model = AlexNet(AlexNetConfig(num_classes=num_classes, extra_conv6=extra_conv6), devices=("meta", "meta"))
    return 2 * 4 * sum(p.numel() for p in model.parameters())


def shown_path(path: Path, root: Path) -> str:
    """A path as the plan prints it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(root.resolve())) if path.is_relative_to(root.resolve()) else str(path)


def compute_plan(plan, root: Path, measure_seconds: float = 30.0) -> tuple[str, dict]:
    """The plan as printable lines and as a dict."""
    counts, counted_from = plan.counts  # image_counts(plan), once per plan
    train_n, val_n = counts.get("train", 0), counts.get("val", 0)
    runs = plan.runs_of()
    if not runs:
        return "compute plan: no training run selected\n", {"runs": []}
    batch = max(plan.size(exp).batch_size for exp, _, _ in runs)
    found = benchmark_rate(plan.devices[0], root, resident=bool(plan.synthetic))
    rate, rate_from = found if found else measured_rate(plan.devices, batch, measure_seconds)
    share, share_from = forward_share(plan.devices[0], root)
    classes = plan.synthetic[0] if plan.synthetic else None
    costs = []
    pre = plan.pretrain_listed if any(run.data == "pretrain" for _, run, _ in runs) else None
    pretrain_n = sum(_unit_images(u) for u in pre.units.get("train", [])) if pre else 0
    shared = plan.shared()
    for exp, run, run_dir in runs:
        if run.name in shared:  # trained once, as the run it shares its directory with
            continue
        size = plan.size(exp)
        train_n = pretrain_n if run.data == "pretrain" else counts.get("train", 0)
        done = max((checkpoint.epoch_of(p) for p in checkpoint.files(run_dir)), default=0)
        per_epoch = (size.train_batches * size.batch_size or train_n) + share * val_n
        final = share * val_n * (11 if exp.scale == "main" else 1)
        ck = checkpoint_bytes(len(pre.classes) if run.data == "pretrain" else classes or 1000,
                              run.overrides.get("extra_conv6", False))
        costs.append(RunCost(exp.name, run.name, size.epochs, size.batch_size,
                             size.train_batches * size.batch_size or train_n, min(done, size.epochs),
                             ((size.epochs - min(done, size.epochs)) * per_epoch + final) / rate / 3600,
                             ck * (2 if exp.scale == "main" else 1)))
    train_n = counts.get("train", 0)
    features = (train_n + val_n) * FEATURE_BYTES if plan.main_run() else 0
    hours = sum(c.hours for c in costs) + share * (train_n + val_n) / rate / 3600 * bool(features)
    meta = plan.cache / "meta.json"
    cache_bytes = (sum(f.stat().st_size for f in plan.cache.iterdir()) if meta.exists()
                   else (train_n + val_n) * JPEG_BYTES + shard_count(plan, counts) * SHARD_STATS_BYTES)
    lines = [f"compute plan: scale {plan.scale}, {plan.dataset}; towers on "
             f"{', '.join(map(str, plan.devices))} ({device_name(plan.devices[0])})",
             f"  images: {train_n:,} train, {val_n:,} val (from {counted_from})",
             f"  results: {shown_path(plan.results, root)} (tables, figures); "
             f"runs: {shown_path(plan.runs, root)}",
             f"  recipe: {plan.size(runs[0][0]).recipe().replace('**', '')}"
             + (f" ({plan.override.why})" if plan.override.why else ""),
             f"  rate: {rate:,.1f} training images/s, faithful ({rate_from}); a validation image costs "
             f"{share:.2f} of a training image ({share_from})",
             f"  {'experiment':<15} {'run':<15} {'epochs':>6} {'done':>4} {'batch':>5} {'images/epoch':>13} "
             f"{'hours left':>10}"]
    lines += [f"  {c.experiment:<15} {c.run:<15} {c.epochs:>6} {c.done:>4} {c.batch:>5} {c.images:>13,} "
              f"{c.hours:>10.2f}" for c in costs]
    lines += [f"  {exp.name:<15} {run.name:<15} the same run as {shared[run.name]} (trained once)"
              for exp, run, _ in runs if run.name in shared]
    pairs = len(plan.device_pairs)
    lines += [f"  total: {len(costs)} run(s), {hours:.2f} hours left on one device pair (evaluations"
              + (" and Figure 4's features" if features else "") + " included)"
              + ((f"; about {hours / pairs:.2f} hours on the {pairs} pairs given, runs in parallel"
                  if plan.devices[0].type == "cuda" else
                  f"; the {pairs} CPU pairs given share the machine's cores: two at a time on 2 cores "
                  "trained about 1.4× one run's images a second (README, Performance), not "
                  f"{pairs}×") if pairs > 1 else ""),
              f"  disk: cache {cache_bytes / 1e9:.2f} GB"
              + ("" if meta.exists() else f" (estimate: {JPEG_BYTES // 1000} KB per image and "
                                              f"{SHARD_STATS_BYTES / 1e6:.1f} MB of pixel sums per shard)")
              + f", checkpoints {sum(c.checkpoint_bytes for c in costs) / 1e9:.2f} GB "
              "(the last 2 of 1 CNN, the last of every other run)"
              + (f", Figure 4's features {features / 1e9:.2f} GB" if features else "")]
    return "\n".join(lines) + "\n", {"images": counts, "rate": rate, "rate_from": rate_from,
                                     "forward_share": share, "forward_share_from": share_from, "hours": hours,
                                     "runs": [c.__dict__ for c in costs], "cache_bytes": cache_bytes,
                                     "checkpoint_bytes": sum(c.checkpoint_bytes for c in costs),
                                     "feature_bytes": features}
