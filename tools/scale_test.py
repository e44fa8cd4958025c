"""Does memory stay flat as the dataset grows? The scale test for ImageNet size.

    python -m tools.scale_test    # 1000 classes; 2 and 8 train, 1 and 2 val per class
    python -m tools.scale_test --classes 64 --train 2,4 --val 1,2 --fig1-cap 100 --work /tmp/scale
                                  # a quick look (3 min)

Generates the embedded synthetic dataset (ILSVRC-2012 archive format, 1000
classes like ILSVRC) at two sizes and runs every stage of `run_all` on each,
every stage in its own process, as run_all would call it:

  prepare        tools.prepare --imagenet: archives → 256×256 cache, mean image, PCA (§2, §4.1)
  train          alexnet.train: 2 steps of batch 128, then the epoch's validation (§5)
  evaluate       alexnet.evaluate on val, centre patch (ten patches cost 10× the time here,
                 and hold 10 crops per image of a batch: the same memory at any N)
  features:train alexnet.evaluate --features on train (Figure 4's N×4096 matrix, written batch by batch)
  features:val   the same on val
  figures        reproduce.figures: Figure 4 (streamed nearest neighbours, predictions of the
                 drawn images), Figure 3, the training curves
  figure1        reproduce.figure1, 1 step a net, its subset capped at --fig1-cap images (below
                 both sizes, so memory must be flat as it is at ImageNet's 1.28M)

Peak memory is the stage's peak resident set (ru_maxrss from wait4: the
largest process of the stage, loader workers included). The stages run with
at most 1024 open files, a common default (ILSVRC's train split has 1000 data
files). The check: from the small to the large set no stage may grow by more
than max(64 MiB, 10%). The projection to ILSVRC-2012 (1,281,167 train,
50,000 val images): a stage within the allowance stays at its peak on the
large set; one that grew is extended along the line through its two
measurements, against the number of images it reads. Figure 1's projection is
its cost at its default 50,000-image cap (from one more run, uncapped on the
large set). Writes scale_test.json and scale_test.md to --out; exits 1 when a
stage grows or fails.
"""

from __future__ import annotations

if not __package__:  # `python tools/scale_test.py`: run as the module it is (its imports are the package's)
    import pathlib
    import runpy
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    sys.exit(runpy.run_module("tools.scale_test", run_name="__main__"))

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alexnet.atomic import write_text
from alexnet.checkpoint import code_version
from alexnet.data.synthetic import GENERATOR_VERSION, GENERATORS, write_synthetic_ilsvrc
from reproduce.figure1 import CIFAR_SIZE
from tools.bench import IMAGENET_TRAIN_IMAGES

ROOT = Path(__file__).resolve().parent.parent
IMAGENET = {"train": IMAGENET_TRAIN_IMAGES, "val": 50_000}  # ILSVRC-2012
MiB = 2**20
ALLOWANCE = (64 * MiB, 0.10)  # growth allowed from the small to the large set: max(absolute, relative)
OPEN_FILES = 1024  # the stages run with this limit on open files, a common default
# A process's ru_maxrss starts from its parent's peak at fork (Linux carries it across exec), so a
# stage is started by this small Python process, and the peak read is the stage's own.
_SPAWN = """import os, resource, subprocess, sys
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (min(int(sys.argv[1]), hard), hard))
p = subprocess.Popen(sys.argv[3:])
_, status, usage = os.wait4(p.pid, 0)
open(sys.argv[2], "w").write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_rss(cmd: list[str], log: Path) -> tuple[int, float]:
    """Run `cmd` (output to `log`); its peak resident set in bytes and its seconds. Raises
    RuntimeError when it fails."""
    t0 = time.time()
    peak = log.with_suffix(".peak")
    with open(log, "w") as f:
        code = subprocess.run([sys.executable, "-c", _SPAWN, str(OPEN_FILES), str(peak), *cmd], cwd=ROOT,
                              stdout=f, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[2:4])} exited with {code}; see {log}")
    return int(peak.read_text()), time.time() - t0


@dataclass
class Size:
    classes: int
    train: int  # per class
    val: int  # per class

    @property
    def images(self) -> dict:
        return {"train": self.classes * self.train, "val": self.classes * self.val}

    @property
    def name(self) -> str:
        return f"{self.classes}x{self.train}x{self.val}"


def stages(size: Size, work: Path, devices: str | None, fig1_cap: int) -> list[tuple[str, str, list[str]]]:
    """(stage, what its memory could scale with, command) in run_all's order."""
    raw, cache, run = work / "data" / size.name, work / "cache" / size.name, work / "runs" / size.name
    res, feats = work / "results" / size.name, work / "runs" / size.name / "features"
    py, dev = [sys.executable, "-m"], (["--devices", devices] if devices else [])
    return [
        ("prepare", "train+val", py + ["tools.prepare", "--imagenet", str(raw), "--cache", str(cache),
                                       "--no-progress"]),
        ("train", "train+val", py + ["alexnet.train", "--cache", str(cache), "--run-dir", str(run),
                                     "--epochs", "1", "--train-batches", "2", "--keep", "1", "--no-progress"]
         + dev),
        ("evaluate", "val", py + ["alexnet.evaluate", "--cache", str(cache), "--checkpoint", str(run),
                                  "--views", "center", "--out", str(res / "eval.json")] + dev),
        ("features:train", "train", py + ["alexnet.evaluate", "--cache", str(cache), "--checkpoint", str(run),
                                          "--split", "train", "--features", str(feats / "train.npy")] + dev),
        ("features:val", "val", py + ["alexnet.evaluate", "--cache", str(cache), "--checkpoint", str(run),
                                      "--split", "val", "--features", str(feats / "val.npy")] + dev),
        ("figures", "train", py + ["reproduce.figures", "--results", str(res), "--cache", str(cache),
                                   "--run", str(run), "--features", str(feats)]),
        ("figure1", "cap", py + ["reproduce.figure1", "--cache", str(cache), "--scale", "smoke",
                                 "--steps", "1", "--max-images", str(fig1_cap),
                                 "--out", str(res / "figure1.json")]),
    ]


def images_read(scales_with: str, size_images: dict, fig1_cap: int) -> int:
    if scales_with == "cap":
        return min(fig1_cap, size_images["train"])
    return sum(size_images[s] for s in scales_with.split("+"))


def verdict(small: int, large: int) -> tuple[bool, int]:
    """(within the allowance, the allowance in bytes) for a stage's peaks on the two sets."""
    allowance = max(ALLOWANCE[0], int(ALLOWANCE[1] * small))
    return large - small <= allowance, allowance


def project(n_small: int, small: int, n_large: int, large: int, n_target: int, flat: bool) -> int:
    """A flat stage stays at its larger peak; one that grew, the line through (n_small, small) and
    (n_large, large) at n_target. (Extending a difference within the run-to-run noise would
    project the noise.)"""
    if flat or n_large == n_small:
        return large
    return int(large + (large - small) / (n_large - n_small) * (n_target - n_large))


def markdown(report: dict) -> str:
    s, l = report["sizes"]
    lines = [f"Scale test: peak resident memory per stage, synthetic ILSVRC-format sets (generator "
             f"{report.get('generator', 2)}) of {s['classes']} "
             f"classes ({report['images'][0]['train']:,} and {report['images'][1]['train']:,} training "
             f"images, {report['images'][0]['val']:,} and {report['images'][1]['val']:,} validation); "
             f"{report['machine']}, commit {report['commit']}, {report['date']}.", "",
             f"| stage | images it reads | {s['name']} | {l['name']} | growth | allowed | seconds | "
             "projected at ILSVRC-2012 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["stages"]:
        lines.append(f"| {r['stage']} | {r['images'][0]:,} → {r['images'][1]:,} | {r['peak_mib'][0]:,.0f} "
                     f"MiB | {r['peak_mib'][1]:,.0f} MiB | {r['peak_mib'][1] - r['peak_mib'][0]:+,.0f} MiB | "
                     f"{r['allowed_mib']:,.0f} MiB | {r['seconds'][0]:,.0f} → {r['seconds'][1]:,.0f} | "
                     f"{r['projected_mib']:,.0f} MiB{' (flat)' if r['flat'] else ' (GROWS: linear)'} |")
    lines += ["", report["figure1_note"], "", report["below_resolution"], "",
              f"Verdict: {report['verdict']}", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.scale_test", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--train", default="2,8", help="training images per class, small and large set")
    ap.add_argument("--val", default="1,2", help="validation images per class, small and large set")
    ap.add_argument("--fig1-cap", type=int, default=1000, help="Figure 1's subset cap in this test")
    ap.add_argument("--devices", help="tower devices (default: what exists)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "scale-test",
                    help="data, cache and runs of the test (several GB at the default sizes)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "scale-test")
    ap.add_argument("--generator", type=int, choices=GENERATORS, default=GENERATOR_VERSION,
                    help=f"the embedded set's generator (default {GENERATOR_VERSION}; results/scale-test was "
                         "made by 2); its sets go to --work/g<N>")
    args = ap.parse_args(argv)
    try:
        sizes = [Size(args.classes, int(t), int(v))
                 for t, v in zip(args.train.split(","), args.val.split(","))]
    except ValueError:
        ap.error("--train and --val take two numbers each, like 2,8")
    if len(sizes) != 2 or sizes[0].images["train"] >= sizes[1].images["train"]:
        ap.error("--train and --val: two sizes, the second with more training images")
    if args.fig1_cap >= sizes[0].images["train"]:
        ap.error(f"--fig1-cap {args.fig1_cap}: must be below the small set's {sizes[0].images['train']} "
                 "training images, so that both sets are above it")
    args.work = args.work / f"g{args.generator}"  # one generator's sets apart from another's
    (args.work / "logs").mkdir(parents=True, exist_ok=True)
    peaks: dict[str, list] = {}
    for size in sizes:
        print(f"== {size.name}: {size.images['train']:,} train, {size.images['val']:,} val images",
              flush=True)
        write_synthetic_ilsvrc(args.work / "data" / size.name, size.classes, size.train, size.val,
                               generator=args.generator)
        for stage, scales_with, cmd in stages(size, args.work, args.devices, args.fig1_cap):
            try:
                peak, sec = peak_rss(cmd, args.work / "logs" / f"{size.name}-{stage.replace(':', '-')}.log")
            except RuntimeError as e:
                print(f"error: {stage}: {e}", file=sys.stderr)
                return 1
            peaks.setdefault(stage, [scales_with]).append((peak, sec))
            print(f"  {stage:<15} peak {peak / MiB:8,.0f} MiB  {sec:7.1f} s", flush=True)
    small, large = sizes
    # Figure 1's own cost per image, for its default cap: the large set uncapped against capped.
    cmd = stages(large, args.work, args.devices, large.images["train"])[-1][2]
    fig1_full, _ = peak_rss(cmd, args.work / "logs" / f"{large.name}-figure1-uncapped.log")
    fig1_capped = peaks["figure1"][2][0]
    per_image = max(0.0, (fig1_full - fig1_capped) / (large.images["train"] - args.fig1_cap))

    rows = []
    for stage, (scales_with, (p0, s0), (p1, s1)) in peaks.items():
        ok, allowed = verdict(p0, p1)
        n0, n1 = (images_read(scales_with, s.images, args.fig1_cap) for s in sizes)
        if scales_with == "cap":
            projected = int(p1 + per_image * (CIFAR_SIZE - args.fig1_cap))
        else:
            target = sum(IMAGENET[s] for s in scales_with.split("+"))
            projected = project(n0, p0, n1, p1, target, ok)
        rows.append({"stage": stage, "scales_with": scales_with, "images": [n0, n1],
                     "peak_mib": [p0 / MiB, p1 / MiB], "seconds": [round(s0, 1), round(s1, 1)],
                     "allowed_mib": allowed / MiB, "flat": ok, "projected_mib": projected / MiB})
    grown = [r["stage"] for r in rows if not r["flat"]]
    # Below the test's resolution, what grows with N by design (counted, not read off RSS).
    index_file = lambda split: args.work / "cache" / large.name / f"{split}.index.npz"  # noqa: E731
    index = {split: sum(a.nbytes for a in np.load(index_file(split)).values()) / large.images[split]
             for split in ("train", "val")}
    resolution = ALLOWANCE[0] / (large.images["train"] - small.images["train"])
    report = {
        "what": "peak resident memory (ru_maxrss of the stage's largest process) per run_all stage",
        "sizes": [{"name": s.name, "classes": s.classes, "train_per_class": s.train, "val_per_class": s.val}
                  for s in sizes],
        "images": [s.images for s in sizes], "imagenet": IMAGENET, "generator": args.generator,
        "allowance": f"max({ALLOWANCE[0] // MiB} MiB, {ALLOWANCE[1]:.0%})",
        "stages": rows,
        "figure1_note": (f"Figure 1 runs with its subset capped at {args.fig1_cap:,} images here (both sets "
                         f"above it); uncapped on the {large.images['train']:,}-image set it peaked at "
                         f"{fig1_full / MiB:,.0f} MiB, {per_image / 1024:,.1f} KiB per image, which puts it "
                         f"at the default {CIFAR_SIZE:,}-image cap at the projected value."),
        "below_resolution": (
            f"The check resolves growth down to about {resolution / 1024:,.0f} KiB per training image (64 "
            f"MiB over {large.images['train'] - small.images['train']:,} images). Smaller, and linear by "
            f"design: the cache index, {index['train']:.0f} bytes per training image and {index['val']:.0f} "
            "per validation image as measured here "
            f"({(index['train'] * IMAGENET['train'] + index['val'] * IMAGENET['val']) / MiB:,.0f} MiB at "
            "ILSVRC-2012, in every process that opens the cache; forked loader workers share it), and "
            f"evaluate's mean softmax, {large.classes} classes × 4 bytes per validation image and view "
            f"({IMAGENET['val'] * 1000 * 4 / MiB:,.0f} MiB per view at 50,000 × 1000)."),
        "verdict": ("every stage flat within the allowance" if not grown
                    else f"GROWS with the dataset: {', '.join(grown)}"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "commit": code_version(),
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python -m tools.scale_test", *(argv or sys.argv[1:])]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "scale_test.json", json.dumps(report, indent=1))
    write_text(args.out / "scale_test.md", markdown(report))
    print("\n" + markdown(report))
    return 0 if not grown else 1


if __name__ == "__main__":
    sys.exit(main())
