"""Regenerate the paper's tables and figures: data → train → evaluate → tables → figures.

    bash reproduce/run_all.sh                                  # embedded synthetic dataset, CPU, ~15 min
    bash reproduce/run_all.sh --imagenet /data/ilsvrc2012      # the real reproduction (90 epochs per run)
    bash reproduce/run_all.sh --imagenet2010 /data/ilsvrc2010  # Table 1 (ImageFolder with train/ val/ test/)
    bash reproduce/run_all.sh --data /data/imagenette2 --experiments 1cnn,no-lrn --epochs 30
    bash reproduce/run_all.sh --experiments 1cnn --devices cuda:0,cuda:1

Every option also reads an environment variable (IMAGENET, IMAGENET2010, DATA,
PRETRAIN_DATA, EXPERIMENTS, EPOCHS, DEVICES, SCALE). Idempotent and resumable:
a finished stage is skipped; a killed run continues where it stopped (each
training run resumes from its newest checkpoint). Layout: cache/<dataset>/
(prepared data), runs/<dataset>/<run>/ (checkpoints, log), results/<dataset>/
(tables, figures, logs and evaluation JSON: what gets committed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alexnet import checkpoint  # noqa: E402
from alexnet.checkpoint import RunLock, RunLocked  # noqa: E402
from alexnet.data.sources import DatasetError, open_source  # noqa: E402
from alexnet.data.synthetic import synthetic_name  # noqa: E402
from alexnet.experiments import EXPERIMENTS, SCALES, select  # noqa: E402
from alexnet.placement import resolve_devices  # noqa: E402

PY = sys.executable


def parse_args(argv=None):
    env = os.environ.get
    ap = argparse.ArgumentParser(prog="bash reproduce/run_all.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--imagenet", default=env("IMAGENET"), help="ILSVRC-2012 folder (train/val tars + devkit)")
    src.add_argument("--imagenet2010", default=env("IMAGENET2010"),
                     help="ILSVRC-2010 as an ImageFolder with train/ val/ test/ (Table 1)")
    src.add_argument("--data", default=env("DATA"), help="any ImageFolder with train/ and val/")
    ap.add_argument("--pretrain-data", default=env("PRETRAIN_DATA"),
                    help="ImageNet Fall 2011 for 1 CNN* (not implemented yet: the row says so)")
    ap.add_argument("--experiments", default=env("EXPERIMENTS"),
                    help=f"comma-separated, default all: {', '.join(EXPERIMENTS)}")
    ap.add_argument("--epochs", type=int, default=int(env("EPOCHS")) if env("EPOCHS") else None,
                    help="override every run's epochs")
    ap.add_argument("--devices", default=env("DEVICES"), help="tower devices, e.g. cuda:0,cuda:1 (default: what exists)")
    ap.add_argument("--scale", choices=sorted(SCALES), default=env("SCALE"),
                    help="run sizes (default: imagenet for real data, embedded for the synthetic set)")
    ap.add_argument("--synthetic-size", default=env("SYNTHETIC_SIZE", "10,120,20"),
                    help="embedded dataset: classes,train-per-class,val-per-class (default 10,120,20)")
    ap.add_argument("--results", default=env("RESULTS"), help="results folder (default results/<dataset>)")
    ap.add_argument("--work", default=env("WORK", str(ROOT)),
                    help="where data/ (generated archives), cache/ and runs/ go (default: the repository)")
    args = ap.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        ap.error(f"--epochs={args.epochs}: must be at least 1")
    return ap, args


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def sh(cmd: list[str]) -> None:
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    r = subprocess.run([str(c) for c in cmd], cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"error: this stage failed (exit {r.returncode}): {' '.join(map(str, cmd))}\n"
                 "Fix what it says and run the same command again: finished stages are skipped.")


def flags(options: dict) -> list:
    """alexnet.train flags for config/scale fields: lrn=False → --no-lrn, extra_conv6=True → --extra-conv6."""
    out = []
    for key, value in options.items():
        flag = key.replace("_", "-")
        if value is False:
            out.append(f"--no-{flag}")
        elif value is True:
            out.append(f"--{flag}")
        else:
            out += [f"--{flag}", value]
    return out


def newest(run_dir: Path) -> Path | None:
    ckpts = checkpoint.files(run_dir)
    return ckpts[-1] if ckpts else None


def finished(run_dir: Path, epochs: int) -> bool:
    return any(checkpoint.epoch_of(p) == epochs for p in checkpoint.files(run_dir))


def up_to_date(out: Path, *inputs: Path) -> bool:
    return out.exists() and all(p is not None and p.exists() and out.stat().st_mtime >= p.stat().st_mtime
                                for p in inputs)


def main(argv=None) -> int:
    ap, args = parse_args(argv)
    try:
        return run(ap, args)
    except RunLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(ap, args) -> int:
    t_start = time.time()
    # ---- everything that can be wrong is checked before any long work ----
    try:
        experiments = select(args.experiments)
        devices = resolve_devices(args.devices)
        if args.imagenet:
            open_source(imagenet=args.imagenet)
            name, prep, kind = "ilsvrc2012", ["--imagenet", args.imagenet], "imagenet"
        elif args.imagenet2010 or args.data:
            folder = args.imagenet2010 or args.data
            open_source(folder=folder)
            name = "ilsvrc2010" if args.imagenet2010 else Path(folder).resolve().name
            prep, kind = ["--data", folder], "imagenet"
        else:
            size = args.synthetic_size.split(",")
            if len(size) != 3 or not all(x.strip().isdigit() for x in size) or int(size[0]) < 2 \
                    or min(int(x) for x in size) < 1:
                raise ValueError(f"--synthetic-size {args.synthetic_size!r}: give classes,train-per-class,"
                                 "val-per-class, e.g. 10,120,20 (at least 2 classes, 1 image each)")
            classes, per_train, per_val = (int(x) for x in size)
            name, kind = synthetic_name(classes, per_train, per_val), "embedded"
            prep = ["--synthetic", "--classes", classes, "--train-per-class", per_train,
                    "--val-per-class", per_val, "--raw", Path(args.work).resolve() / "data" / name]
    except (ValueError, DatasetError) as e:
        ap.error(str(e))
    scale = args.scale or kind
    dataset = ("embedded synthetic dataset (ILSVRC-2012 format, not ImageNet)" if kind == "embedded" else
               {"ilsvrc2012": "ILSVRC-2012", "ilsvrc2010": "ILSVRC-2010"}.get(name, name))
    work = Path(args.work).resolve()
    cache, runs, results = work / "cache" / name, work / "runs" / name, Path(args.results or ROOT / "results" / name)
    plan = Plan(experiments, devices, scale, dataset, prep, cache, runs, results, t_start)
    with RunLock(results, what="run_all"):  # two run_all on one results folder: the second refuses
        return stages(args, plan)


@dataclass(frozen=True)
class Plan:
    """What the stages will do, worked out and checked before any long work."""
    experiments: list
    devices: tuple
    scale: str  # key of alexnet.experiments.SCALES
    dataset: str  # name for tables and figures
    prep: list  # tools.prepare arguments
    cache: Path
    runs: Path
    results: Path
    started: float  # time.time() at the start


def stages(args, plan: Plan) -> int:
    experiments, devices, scale, dataset, prep = plan.experiments, plan.devices, plan.scale, plan.dataset, plan.prep
    cache, runs, results, t_start = plan.cache, plan.runs, plan.results, plan.started
    for d in (runs, results / "eval", results / "logs"):
        d.mkdir(parents=True, exist_ok=True)
    dev = ",".join(str(d) for d in devices)

    step(f"1. data: prepare {dataset} (§2) → {cache}")
    sh([PY, "-m", "tools.prepare", *prep, "--cache", cache, "--no-progress"])

    step("2. train (§5)")
    planned = []
    for exp in experiments:
        if exp.needs and not args.pretrain_data:
            print(f"skip {exp.name}: {exp.needs}")
            continue
        if exp.needs:
            print(f"skip {exp.name}: pre-training on another dataset is not implemented yet")
            continue
        size = dict(SCALES[scale][exp.scale])
        if args.epochs:
            size["epochs"] = args.epochs
        for run in exp.runs:
            run_dir = runs / run.name
            planned.append((exp, run, run_dir, size))
            if finished(run_dir, size["epochs"]):
                print(f"done already: {run.name}")
                continue
            sh([PY, "-m", "alexnet.train", "--cache", cache, "--run-dir", run_dir, "--devices", dev,
                "--profile", run.profile, "--seed", run.seed, "--no-progress",
                "--keep", 2 if exp.scale == "main" else 1, *flags({**size, **run.overrides})])

    step("3. evaluate (§4.1: centre patch and ten patches)")
    by_exp: dict[str, list] = {}
    for exp, run, run_dir, _ in planned:
        by_exp.setdefault(exp.name, []).append(run_dir)
        log = run_dir / "log.jsonl"
        if log.exists():
            shutil.copy(log, results / "logs" / f"{run.name}.jsonl")
    for exp_name, dirs in by_exp.items():
        if exp_name == "fig1" or not dirs:
            continue
        out = results / "eval" / f"{exp_name if len(dirs) > 1 else dirs[0].name}.json"
        if up_to_date(out, *(newest(d) for d in dirs)):
            print(f"done already: {out.name}")
            continue
        views = "both" if EXPERIMENTS[exp_name].scale == "main" else "center"
        sh([PY, "-m", "alexnet.evaluate", "--cache", cache, "--checkpoint", *dirs, "--views", views,
            "--devices", dev, "--batch-size", 50, "--out", out])
        if exp_name == "1cnn" and args.imagenet2010 and (cache / "test.index.npz").exists():
            sh([PY, "-m", "alexnet.evaluate", "--cache", cache, "--checkpoint", *dirs, "--split", "test",
                "--views", "both", "--devices", dev, "--out", results / "eval" / "1cnn-test.json"])

    feats = runs / "1cnn" / "features"
    if "1cnn" in by_exp:
        step("4. features of the last hidden layer (§6.1, Figure 4)")
        feats.mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            out = feats / f"{split}.npz"
            if up_to_date(out, newest(runs / "1cnn")):
                print(f"done already: {out}")
                continue
            sh([PY, "-m", "alexnet.evaluate", "--cache", cache, "--checkpoint", runs / "1cnn", "--split", split,
                "--devices", dev, "--batch-size", 50, "--features", out])

    if any(e.name == "fig1" for e in experiments):
        step("5. Figure 1: ReLU vs tanh (four-layer CIFAR-10 net stand-in)")
        out = results / "figure1.json"
        if out.exists():
            print(f"done already: {out}")
        else:
            epochs = args.epochs or {"embedded": 12, "smoke": 2}.get(scale, 30)
            sh([PY, "-m", "alexnet.cifar", "--cache", cache, "--epochs", epochs, "--out", out])

    step("6. tables and figures")
    sh([PY, "-m", "alexnet.report", "--results", results, "--dataset", dataset, "--scale", scale,
        *(["--ilsvrc2010"] if args.imagenet2010 else []),
        *(["--test-note", "ILSVRC-2012 test labels were never published; the test images are not ingested"]
          if args.imagenet else [])])
    sh([PY, "-m", "alexnet.figures", "--results", results, "--cache", cache, "--dataset", dataset,
        *(["--run", runs / "1cnn", "--features", feats] if "1cnn" in by_exp else [])])
    minutes = (time.time() - t_start) / 60
    print(f"\nall done in {minutes:.1f} min: tables in {results / 'tables'}, figures in {results / 'figures'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
