"""Side-by-side throughput: this project's training step and data pipelines
against torchvision's `alexnet` with the `pytorch/examples` ImageNet recipe
(ImageFolder + PIL + RandomResizedCrop + Normalize + DataLoader workers).

    python -m tools.bench                                   # CPU here: small sizes
    python -m tools.bench --device cuda --batch 128         # one GPU: both towers on it
    python -m tools.bench --device cuda --batch 512 --fast  # + the fast mode (bf16, channels-last, compile)

Every step timed is `alexnet.engine.train_step`, the step the trainer runs
(forward, loss, backward, update, top-1/top-5 counts); only the model and the
optimizer differ. Measures, each after warm-up as the median of repeats (CUDA
events on GPU):
  step/faithful          this project's training step, float32, TF32 off (random data,
                         1000 classes); on the CPU the median of as many steps as
                         e2e/train's epoch has
  step/faithful-after    the same, right after e2e/train: "e2e train / step ours" divides by
                         the mean of the two (the machine's speed drifts)
  step/forward           the faithful net's forward pass alone (eval mode, no gradients): the cost of
                         a validation or feature image, which the compute plan takes from here
  step/faithful-plain    the same with the plain LRN (torch's F.local_response_norm):
                         what the faithful mode's LRN saves
  step/faithful-streams  one CUDA stream per tower (both towers on one GPU); GPU only
  step/faithful-autotuned  the faithful step with cuDNN autotuned and not deterministic: against
                         step/faithful, what faithful mode's reproducible cuDNN costs; GPU only
  step/fast              --fast (bf16 autocast, channels-last, torch.compile; not bit-faithful)
  step/torchvision       torchvision alexnet + torch.optim.SGD (random data), the baseline
  data/ours-cpu          our CPU loader (cache → decode → §4.1 augmentation), images/s
  data/ours-gpu          our GPU loader: the workers decode (libjpeg-turbo), the GPU augments; GPU only
  data/ours-gpu-nvjpeg   the same decoding with nvJPEG in the main process (--decoder gpu); GPU only
  data/ours-gpu-resident gathering from the set decoded once into GPU memory
                         (alexnet.data.loader's resident mode); GPU only
  data/baseline          ImageFolder + PIL + RandomResizedCrop + ToTensor + Normalize
  e2e/ours               our loader feeding our step (faithful)
  e2e/baseline           the baseline pipeline feeding torchvision alexnet
  e2e/train              `python -m alexnet.train` itself: the images/s of its second
                         epoch (data, step, metrics; compile and warm-up fall in the first;
                         on the CPU the median of epochs 2–4, the machine's speed drifts);
                         on a GPU the embedded set is resident (--resident auto)
  e2e/train-decode       the same decoding every batch (--resident off), as ILSVRC always
                         is; GPU only
  memory (GPU only)      peak GPU memory of one faithful step, per tower device: both
                         towers on the GPU, and tower 1 on the CPU ("cuda:0","cpu")
and writes JSON (device name, versions, commit, date) to results/benchmarks/,
with the hours a 90-epoch ImageNet run would take at the e2e/train rate
(e2e/train-decode on a GPU: ILSVRC is too large to be resident).
The images are the prepared cache's 256×256 JPEGs (default: the embedded
dataset), written out as an ImageFolder for the baseline, so both read the
same files.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from alexnet.atomic import write_text
from alexnet.checkpoint import code_version
from alexnet.config import AlexNetConfig
from alexnet.data.cache import Cache
from alexnet.data.loader import Loader
from alexnet.data.synthetic import DEFAULT_DATA
from alexnet.engine import train_step
from alexnet.layers import LocalResponseNorm
from alexnet.model import AlexNet
from alexnet.optim import PaperSGD, param_groups
from alexnet.speed import Speed

IMAGENET_TRAIN_IMAGES = 1_281_167  # ILSVRC-2012 training set
PAPER_EPOCHS = 90  # §5: "roughly 90 cycles"


def timed(fn, device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of fn() after warm-up; CUDA events on a GPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1000)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def our_step(device, batch: int, fast: bool = False, compile: bool = True, num_classes: int = 1000,
             plain_lrn: bool = False, tower_streams: bool = False, autotune: bool = False):
    """A training step in the backend switches of its mode (Speed.setup), which stay set after;
    `autotune`: faithful, but cuDNN autotuned and free to be non-deterministic (what determinism costs)."""
    speed = Speed(fast=fast, compile=compile)
    speed.setup()
    if autotune:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False
    torch.manual_seed(0)
    cfg = AlexNetConfig.from_profile("paper", num_classes=num_classes)
    model = AlexNet(cfg, devices=(device, device), tower_streams=tower_streams)
    for m in model.modules():
        if isinstance(m, LocalResponseNorm):
            m.plain = plain_lrn
    opt = PaperSGD(param_groups(model, cfg), lr=cfg.lr)
    fwd = speed.forward_fn(model)
    x = speed.inputs(torch.randn(batch, 3, cfg.crop_size, cfg.crop_size, device=device))
    y = torch.randint(0, num_classes, (batch,), device=device)

    def step(xb=x, yb=y):
        train_step(fwd, opt, xb, yb, speed)
    return step


def forward_step(device, batch: int, num_classes: int = 1000):
    """The faithful net's forward pass in eval mode without gradients: what a validation or
    feature image costs (the compute plan takes its ratio to step/faithful)."""
    torch.manual_seed(0)
    cfg = AlexNetConfig.from_profile("paper", num_classes=num_classes)
    model = AlexNet(cfg, devices=(device, device)).eval()
    x = torch.randn(batch, 3, cfg.crop_size, cfg.crop_size, device=device)

    @torch.no_grad()
    def step(xb=x):
        model(xb)
    return step


def profile_table(step, device: torch.device, rows: int = 15) -> str:
    """torch.profiler's top `rows` ops of three steps, by device time on a GPU (CPU time otherwise)."""
    from torch.profiler import ProfilerActivity, profile
    cuda = device.type == "cuda"
    step()
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for _ in range(3):
            step()
        if cuda:
            torch.cuda.synchronize(device)
    return prof.key_averages().table(sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=rows)


def peak_memory(devices: tuple, batch: int) -> dict[str, float]:
    """GiB allocated at the peak of one faithful training step (after a warm-up
    step), for each CUDA device the towers use."""
    cuda = sorted({torch.device(d) for d in devices if torch.device(d).type == "cuda"}, key=str)
    torch.manual_seed(0)
    cfg = AlexNetConfig.from_profile("paper")
    model = AlexNet(cfg, devices=devices)
    opt = PaperSGD(param_groups(model, cfg), lr=cfg.lr)
    x = torch.randn(batch, 3, cfg.crop_size, cfg.crop_size, device=devices[0])
    y = torch.randint(0, cfg.num_classes, (batch,), device=devices[0])
    train_step(model, opt, x, y)
    for d in cuda:
        torch.cuda.synchronize(d)
        torch.cuda.reset_peak_memory_stats(d)
    train_step(model, opt, x, y)
    out = {}
    for d in cuda:
        torch.cuda.synchronize(d)
        out[str(d)] = round(torch.cuda.max_memory_allocated(d) / 2**30, 3)
    del model, opt, x, y
    torch.cuda.empty_cache()
    return out


def torchvision_step(device, batch: int, num_classes: int = 1000):
    from torchvision.models import alexnet
    torch.manual_seed(0)
    model = alexnet(num_classes=num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 224, 224, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)

    def step(xb=x, yb=y):
        train_step(model, opt, xb, yb)
    return step


def export_image_folder(cache: Cache, root: Path) -> Path:
    """The cache's training JPEGs as root/train/<class>/<i>.JPEG (same bytes)."""
    for i in range(cache.size("train")):
        d = root / "train" / cache.classes[int(cache.labels("train")[i])]["wnid"]
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i}.JPEG").write_bytes(cache.read("train", i))
    return root / "train"


def baseline_loader(folder: Path, batch: int, workers: int):
    """pytorch/examples imagenet/main.py's training pipeline."""
    from torchvision import datasets, transforms
    tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(),
                             transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    ds = datasets.ImageFolder(str(folder), tf)
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                       pin_memory=torch.cuda.is_available(), drop_last=True)


def cycle(batches):
    """Batches over as many epochs as a measurement needs (small datasets, big batches)."""
    while True:
        yield from batches


def loader_rate(batches, n_batches: int, device=None) -> float:
    """Images/s over n_batches (after one warm-up batch), moving each batch to device."""
    it = cycle(batches)
    next(it)
    t, n = time.perf_counter(), 0
    for _ in range(n_batches):
        x, y = next(it)
        if device is not None:
            x = x.to(device, non_blocking=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        n += len(y)
    return n / (time.perf_counter() - t)


def e2e_rate(batches, step, n_batches: int, device) -> float:
    it = cycle(batches)
    x, y = next(it)
    step(x.to(device), y.to(device))  # warm-up
    t, n = time.perf_counter(), 0
    for _ in range(n_batches):
        x, y = next(it)
        step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
        n += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - t)


def train_rate(cache: str, device, batch: int, batches: int, extra: list[str], tmp: str,
               epochs: int = 2) -> float:
    """images/s of `alexnet.train` (log.jsonl), run as a subprocess: the median of its epochs
    after the first (compile and warm-up fall in the first)."""
    run_dir = Path(tmp) / f"train{len(list(Path(tmp).glob('train*')))}"
    cmd = [sys.executable, "-m", "alexnet.train", "--cache", cache, "--run-dir", str(run_dir),
           "--devices", str(device), "--epochs", str(epochs), "--batch-size", str(batch), "--train-batches",
           str(batches), "--keep", "1", "--no-progress", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return statistics.median(h["images_per_s"] for h in log[1:])


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("-b", "--batch-size", "--batch", dest="batch", type=int, default=None,
                    help="default: 128 on GPU, 16 on CPU")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps (default: 20 on GPU, 3 on CPU)")
    ap.add_argument("--fast", action="store_true",
                    help="also time the fast (not bit-faithful) mode: step/fast and e2e/train-fast")
    ap.add_argument("--no-compile", action="store_true", help="with --fast: skip torch.compile")
    ap.add_argument("--cache", default=f"cache/{DEFAULT_DATA}",
                    help="prepared images for the pipelines (default: tools.prepare --synthetic's)")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--out", default="results/benchmarks")
    ap.add_argument("--profile", action="store_true",
                    help="also write torch.profiler's top 15 ops of the faithful step to <out>/profile-*.txt")
    ap.add_argument("--quick", action="store_true",
                    help="the fewest steps and batches that run every measurement once: checks the "
                         "script end to end (tools/gpu_check.sh on a machine without CUDA); not a benchmark")
    return ap


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    try:
        from alexnet.placement import check_device, device_name
        device = check_device(args.device)
        cache = Cache(args.cache)
    except ValueError as e:
        ap.error(str(e))
    gpu = device.type == "cuda"
    batch = args.batch or (128 if gpu else 16)
    repeats = 1 if args.quick else args.repeats or (20 if gpu else 3)
    warmup = 0 if args.quick else 5 if gpu else 1
    if args.batch is not None and args.batch < 1:
        ap.error(f"--batch={args.batch}: must be at least 1")
    faithful = Speed(fast=False).setup()  # float32 without TF32, cuDNN deterministic, not autotuned
    res = {"device": device_name(device), "batch": batch, "repeats": repeats, "quick": args.quick,
           "backend": faithful,
           "torch": torch.__version__, "commit": code_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
           "img_s": {}}
    r, name = res["img_s"], res["device"]

    def note(key, value):
        r[key] = round(value, 1)
        print(f"{key:<22} {value:>10.1f} img/s", flush=True)

    def step_rate(step):
        return batch / timed(step, device, warmup, repeats)

    cfg = AlexNetConfig.from_profile("paper", num_classes=len(cache.classes))
    n_batches = 2 if args.quick else 20 if gpu else 12  # for the measurements with a net
    per_epoch = min(len(Loader(cache, "train", cfg, train=True, batch_size=batch)), n_batches)
    # e2e/train between two timings of the step it runs, each over as many steps as its epoch has:
    # this machine's speed drifts by tens of percent from one minute to the next (a 2-core VM: steps
    # of 0.57 s and of 1.0 s within one epoch), so the ratio compares neighbours, not a lucky minute
    step = our_step(device, batch)
    loop_steps, train_epochs = (repeats, 2) if gpu or args.quick else (per_epoch, 4)
    note("step/faithful", batch / timed(step, device, warmup, loop_steps))
    with tempfile.TemporaryDirectory() as tmp:  # in a process of its own, as a user runs it
        note("e2e/train", train_rate(args.cache, device, batch, per_epoch, [], tmp, epochs=train_epochs))
        note("step/faithful-after", batch / timed(step, device, 0, loop_steps))
        del step
        if gpu:  # e2e/train gathers from the decoded set in GPU memory (--resident auto); this decodes
            decoding = train_rate(args.cache, device, batch, per_epoch, ["--resident", "off"], tmp)
            note("e2e/train-decode", decoding)
        if args.fast:
            fast = ["--fast"] + (["--no-compile"] if args.no_compile else [])
            note("e2e/train-fast", train_rate(args.cache, device, batch, per_epoch, fast, tmp))
    note("step/forward", step_rate(forward_step(device, batch)))
    note("step/faithful-plain", step_rate(our_step(device, batch, plain_lrn=True)))
    if gpu:
        note("step/faithful-streams", step_rate(our_step(device, batch, tower_streams=True)))
        # what faithful mode's deterministic cuDNN costs: the same step autotuned, not deterministic
        note("step/faithful-autotuned", step_rate(our_step(device, batch, autotune=True)))
    if args.fast:
        note("step/fast", step_rate(our_step(device, batch, fast=True, compile=not args.no_compile)))
    Speed(fast=False).setup()  # back to faithful for what follows
    note("step/torchvision", step_rate(torchvision_step(device, batch)))

    data_batches = 3 if args.quick else max(20, -(-4000 // batch))  # data alone: at least 4,000 images
    ours_cpu = Loader(cache, "train", cfg, train=True, batch_size=batch, device="cpu", workers=args.workers)
    note("data/ours-cpu", loader_rate(ours_cpu, data_batches))
    if gpu:
        note("data/ours-gpu", loader_rate(Loader(cache, "train", cfg, train=True, batch_size=batch,
                                                 device=device, workers=args.workers), data_batches))
        note("data/ours-gpu-nvjpeg", loader_rate(Loader(cache, "train", cfg, train=True, batch_size=batch,
                                                        device=device, decoder="gpu"), data_batches))
        note("data/ours-gpu-resident", loader_rate(Loader(cache, "train", cfg, train=True, batch_size=batch,
                                                          device=device, resident=True, workers=args.workers),
                                                   data_batches))
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_image_folder(cache, Path(tmp))
        note("data/baseline", loader_rate(baseline_loader(folder, batch, args.workers), data_batches))
        ours = Loader(cache, "train", cfg, train=True, batch_size=batch, device=device,
                      workers=args.workers)
        step = our_step(device, batch, num_classes=len(cache.classes))
        note("e2e/ours", e2e_rate(ours, lambda x, y: step(x, y), n_batches, device))
        tv = torchvision_step(device, batch, len(cache.classes))
        note("e2e/baseline", e2e_rate(baseline_loader(folder, batch, args.workers), lambda x, y: tv(x, y),
                                      n_batches, device))
    res["ratios"] = {
        "step faithful / torchvision": r["step/faithful"] / r["step/torchvision"],
        "step faithful / faithful-plain": r["step/faithful"] / r["step/faithful-plain"],
        "step faithful / forward": r["step/faithful"] / r["step/forward"],
        "e2e ours / step ours": r["e2e/ours"] / r["step/faithful"],
        "e2e train / step ours": r["e2e/train"]
        / statistics.mean([r["step/faithful"], r["step/faithful-after"]]),
        "data ours-cpu / baseline": r["data/ours-cpu"] / r["data/baseline"],
        "e2e ours / e2e baseline": r["e2e/ours"] / r["e2e/baseline"],
    }
    if gpu:
        res["ratios"]["step faithful-streams / faithful"] = r["step/faithful-streams"] / r["step/faithful"]
        res["ratios"]["e2e train-decode / step ours"] = r["e2e/train-decode"] / r["step/faithful"]
    if args.fast:
        res["ratios"]["step fast / faithful"] = r["step/fast"] / r["step/faithful"]
        res["ratios"]["e2e train-fast / step fast"] = r["e2e/train-fast"] / r["step/fast"]
    res["ratios"] = {k: round(v, 3) for k, v in res["ratios"].items()}
    if gpu:
        res["peak_memory_gib"] = {
            "both towers on " + str(device): peak_memory((device, device), batch),
            f"towers on {device}, cpu": peak_memory((device, torch.device("cpu")), batch)}
        for setup, per_device in res["peak_memory_gib"].items():
            print(f"peak memory, faithful step b{batch}, {setup}: " +
                  ", ".join(f"{d} {gib:.2f} GiB" for d, gib in per_device.items()))
    for k, v in res["ratios"].items():
        print(f"{k:<34} {v:.2f}")
    basis = "e2e/train-decode" if gpu else "e2e/train"  # ILSVRC is never resident
    hours = PAPER_EPOCHS * IMAGENET_TRAIN_IMAGES / r[basis] / 3600
    res["projection"] = {"epochs": PAPER_EPOCHS, "images_per_epoch": IMAGENET_TRAIN_IMAGES, "rate": basis,
                         "img_s": r[basis], "hours": round(hours, 1),
                         "setup": f"{name}, both towers on {device}, faithful, batch {batch}"}
    print(f"90-epoch ImageNet run at {basis}'s rate: {PAPER_EPOCHS} × {IMAGENET_TRAIN_IMAGES:,} images "
          f"÷ {r[basis]:.1f} img/s = {hours:,.1f} h")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = f"{'gpu' if gpu else 'cpu'}-{time.strftime('%Y%m%d-%H%M')}"
    if args.profile:
        table = profile_table(our_step(device, batch), device)
        prof_path = out / f"profile-{stamp}.txt"
        write_text(prof_path, f"# faithful step, batch {batch}, {name}, commit {res['commit']}\n{table}\n")
        print(f"profile (top 15 ops) → {prof_path}")
    path = out / f"bench-{stamp}.json"
    write_text(path, json.dumps(res, indent=1))
    print(f"→ {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
