"""Regenerate the paper's tables and figures: data → train → evaluate → tables → figures.

    bash reproduce/run_all.sh                                  # embedded synthetic dataset; CPU: ~18 min
    bash reproduce/run_all.sh --scale cpu-full                 # every row on a CPU
    bash reproduce/run_all.sh --imagenet /data/ilsvrc2012      # the real reproduction (90 epochs per run)
    bash reproduce/run_all.sh --imagenet2010 /data/ilsvrc2010  # Table 1 (ImageFolder with train/ val/ test/)
    bash reproduce/run_all.sh --data /data/imagenette2 --experiments 1cnn,no-lrn --epochs 30
    bash reproduce/run_all.sh --experiments 1cnn --devices cuda:0,cuda:1

Every option also reads an environment variable (IMAGENET, IMAGENET2010, DATA,
PRETRAIN_DATA, EXPERIMENTS, EPOCHS, DEVICES, SCALE, GENERATOR). Idempotent and resumable:
a finished stage is skipped; a killed run continues where it stopped (each
training run resumes from its newest checkpoint). Layout: cache/<dataset>/
(prepared data), runs/<dataset>/<run>/ (checkpoints, log), results/<dataset>/
(tables, figures, logs and evaluation JSON: what gets committed). A run's
directory is runs/<dataset>/<size>/<run> (size: e14-b32 = 14 epochs at batch
32), so scales that give a run the same size share it.

Scales (reproduce/experiments.py): real data → imagenet; the embedded set →
gpu when the towers' device is a GPU, else cpu; --scale overrides. Every
stage is a Python call into the library (alexnet.engine.fit,
alexnet.evaluate.save_errors, ...) with the options worked out once, in `Plan`.
Exit status: 0 done; 2 bad arguments (nothing was written); 1 a stage failed
(the message says which; run the same command again once fixed); 130 interrupted.
"""

from __future__ import annotations

if not __package__:  # `python reproduce/run_all.py`: run as the module it is (its imports are the package's)
    import pathlib
    import runpy
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    sys.exit(runpy.run_module("reproduce.run_all", run_name="__main__"))

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from alexnet import checkpoint
from alexnet.atomic import write_text
from alexnet.checkpoint import RunLock, RunLocked
from alexnet.config import AlexNetConfig
from alexnet.data.cache import Cache
from alexnet.data.loader import cores_each
from alexnet.data.prepare import check_space, format_report, prepare
from alexnet.data.sources import DatasetError, Source, open_source
from alexnet.data.synthetic import (
    DEFAULT_SIZE,
    GENERATOR_VERSION,
    GENERATORS,
    synthetic_name,
    write_synthetic_ilsvrc,
)
from alexnet.data.synthetic import data_name as synthetic_data_name
from alexnet.distributed import SHUTDOWN_TIMEOUT_S
from alexnet.engine import (
    EXIT_INTERRUPTED,
    EXIT_NONFINITE,
    NONFINITE,
    NonFiniteLoss,
    TrainOptions,
    fit,
    load_model,
)
from alexnet.evaluate import save_dropout_mean, save_errors, save_features, shown
from alexnet.placement import resolve_devices

from . import claims, figure1, figures, tables
from .compute import compute_plan, image_counts
from .experiments import (
    EVALUATIONS,
    EXPERIMENTS,
    FIGURE1,
    KICK_LIMIT,
    MAIN,
    SCALES,
    SMALL_DATA,
    STABILITY,
    Experiment,
    Override,
    Run,
    Size,
    run_config,
    same_run,
    select,
)

ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DATASET = "embedded synthetic dataset, generator {} (ILSVRC-2012 format, not ImageNet)"


def parse_args(argv=None):
    env = os.environ.get
    ap = argparse.ArgumentParser(prog="bash reproduce/run_all.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--imagenet", default=env("IMAGENET"),
                     help="ILSVRC-2012 folder (train/val tars + devkit)")
    src.add_argument("--imagenet2010", default=env("IMAGENET2010"),
                     help="ILSVRC-2010 as an ImageFolder with train/ val/ test/ (Table 1)")
    src.add_argument("--data", default=env("DATA"), help="any ImageFolder with train/ and val/")
    ap.add_argument("--pretrain-data", default=env("PRETRAIN_DATA"),
                    help="ImageNet Fall 2011 as an ImageFolder (train/ and val/) for 1 CNN* and 7 CNNs*: two "
                         "nets with a sixth conv layer pre-trained on it, then fine-tuned on the dataset "
                         "(--init-from, the 2012 code's fine-tuning rates)")
    ap.add_argument("--cifar", default=env("CIFAR"),
                    help="CIFAR-10 folder (torchvision's python format: cifar-10-batches-py inside) for "
                         "Figure 1; default: the dataset's training images shrunk to 32×32 (at most 50,000)")
    ap.add_argument("--experiments", default=env("EXPERIMENTS"),
                    help=f"comma-separated, default all: {', '.join(EXPERIMENTS)}; a run's own name "
                         "trains that run alone (5cnns-seed1: one seed)")
    ap.add_argument("--epochs", type=int, default=int(env("EPOCHS")) if env("EPOCHS") else None,
                    help="override every run's epochs")
    ap.add_argument("-b", "--batch-size", type=int,
                    default=int(env("BATCH_SIZE")) if env("BATCH_SIZE") else None,
                    help="override every run's batch size (default: the scale's; 128 at the imagenet scale). "
                         "A small dataset needs a smaller batch: an epoch drops its last, incomplete batch")
    ap.add_argument("--stability", choices=["paper", *STABILITY], default=env("STABILITY"),
                    help="a named deviation from §5's ε and biases for data where the paper's recipe "
                         "diverged (reproduce/PAPER.md, Stability), or 'paper' for §5's values: "
                         + "; ".join(f"{s.name}: {s.changes()}" for s in STABILITY.values())
                         + ". Default: the scale's ("
                         + ", ".join(f"{sc.name}: {sc.main.stability or 'paper'}" for sc in SCALES.values()
                                     if sc.main.stability is not None)
                         + f"); on your own data or ImageNet, {SMALL_DATA} where the classes and batch make "
                           f"§5's first steps kick at least {KICK_LIMIT:g}× harder than ImageNet's at batch "
                           "128. A choice other than the default writes to results/<dataset>-<setting>")
    ap.add_argument("--devices", action="append", default=None,
                    help="tower devices, e.g. cuda:0,cuda:1 (default: what exists). Give it more than once "
                         "(--devices cuda:0,cuda:1 --devices cuda:2,cuda:3) to train that many runs at once, "
                         "one per pair, each in its own process; the same pair twice trains two runs on it "
                         "at once (DEVICES: pairs separated by ';')")
    ap.add_argument("--scale", choices=list(SCALES), default=env("SCALE"),
                    help="run sizes: " + "; ".join(f"{s.name}: {s.why}" for s in SCALES.values())
                    + " (default: imagenet for real data; for the embedded set gpu on a GPU, else cpu)")
    ap.add_argument("--generator", type=int, choices=GENERATORS,
                    default=int(env("GENERATOR", GENERATOR_VERSION)),
                    help=f"embedded dataset: generator version (default {GENERATOR_VERSION}; 2 remakes the "
                         "results folders that say they were made by generator 2)")
    ap.add_argument("--synthetic-size", default=env("SYNTHETIC_SIZE"),
                    help="embedded dataset: classes,train-per-class,val-per-class (default: the scale's, "
                         "10,120,20 for cpu and cpu-full, 100,80,20 for gpu)")
    ap.add_argument("--results", default=env("RESULTS"), help="results folder (default results/<dataset>)")
    ap.add_argument("--work", default=env("WORK", str(ROOT)),
                    help="where data/ (generated archives), cache/ and runs/ go (default: the repository)")
    ap.add_argument("--nproc", type=int, default=int(env("NPROC", "1")),
                    help="each training run as a torchrun job of N data-parallel replicas on this "
                         "node (each replica the two-tower model on GPUs 2r, 2r+1; on a CPU, N "
                         "gloo processes); default 1")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the compute plan (runs, epochs, images, projected hours from this device's "
                         "measured rate, disk) and stop; nothing is written")
    args = ap.parse_args(argv)
    args.devices = args.devices or ([p for p in env("DEVICES").split(";") if p] if env("DEVICES") else None)
    if args.nproc < 1:
        ap.error(f"--nproc={args.nproc}: must be at least 1")
    for flag, n in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if n is not None and n < 1:
            ap.error(f"{flag}={n}: must be at least 1")
    return ap, args


@dataclass(frozen=True)
class Plan:
    """What the stages will do, worked out and checked once, before any long work."""
    experiments: tuple[Experiment, ...]
    devices: tuple  # the two tower devices, resolved (the first pair: evaluation, features, Figure 4)
    device_pairs: tuple  # every --devices given: runs train concurrently, one per pair, when several
    scale: str  # key of reproduce.experiments.SCALES
    dataset: str  # name for tables and figures
    source: dict  # open_source() arguments: imagenet=DIR or folder=DIR
    listed: Source | None  # the given dataset's image list, read once here (None: generated later)
    pretrain_listed: Source | None  # --pretrain-data's image list, read once here
    synthetic: tuple[int, int, int] | None  # classes, train and val per class, when generated
    generator: int  # alexnet.data.synthetic's generator version, when generated
    work: Path  # data/, cache/ and runs/ are here; result files name paths relative to it
    cache: Path
    runs: Path
    results: Path
    override: Override  # --epochs, --batch-size and the stability setting (choose_stability), resolved
    cifar: str | None  # --cifar: CIFAR-10 for Figure 1 (else the dataset at 32×32)
    nproc: int  # --nproc: replicas per training run (torchrun)
    pretrain_data: str | None
    ilsvrc2010: bool  # Table 1 proper (ILSVRC-2010 has a test split)
    test_note: str  # what Table 2's test column says
    started: float  # time.time() at the start

    def size(self, exp: Experiment) -> Size | None:
        """The experiment's run size at this scale (the override applied); None: not run at this scale."""
        return SCALES[self.scale].size(exp.scale, self.override)

    def runs_of(self) -> list[tuple[Experiment, Run, Path]]:
        """Every training run of the selected experiments that this data and scale allow.
        Runs that differ only in name (same profile, overrides, seed, data and size:
        baseline-short and 1cnn wherever the short size is the main size, as at the
        imagenet and cpu-full scales) share one directory, a main run's where there is
        one, so the run is trained once. Worked out once."""
        return self._runs

    @cached_property
    def _runs(self) -> list[tuple[Experiment, Run, Path]]:
        chosen = [(exp, run) for exp in self.experiments
                  if (not exp.needs or self.pretrain_data) and self.size(exp) is not None for run in exp.runs]
        home: dict = {}
        for exp, run in sorted(chosen, key=lambda c: c[0].scale != "main"):  # stable: main runs first
            home.setdefault(same_run(self.size(exp), run), self.runs / self.size(exp).tag / run.name)
        return [(exp, run, home[same_run(self.size(exp), run)]) for exp, run in chosen]

    def shared(self) -> dict[str, str]:
        """{run: the run whose directory it shares} (see runs_of)."""
        return {run.name: run_dir.name for _, run, run_dir in self.runs_of() if run_dir.name != run.name}

    @cached_property
    def counts(self) -> tuple[dict[str, int], str]:
        """Images per split and where the counts come from (reproduce/compute.py), counted once:
        for ILSVRC-2012 that reads every class's tar headers."""
        return image_counts(self)

    @property
    def pretrain_cache(self) -> Path | None:
        """Where --pretrain-data is prepared (1 CNN*)."""
        if not self.pretrain_data:
            return None
        return self.work / "cache" / f"pretrain-{Path(self.pretrain_data).resolve().name}"

    def main_run(self) -> Path | None:
        """The 1cnn run directory (Figures 3 and 4), when 1cnn is selected and did not stop short."""
        stopped = self.stopped()
        return next((d for _, r, d in self.runs_of() if r.name in MAIN.runs and r.name not in stopped), None)

    def stopped(self) -> dict[str, str]:
        """Runs of this plan's stability setting that stopped, by run name: what happened
        (results/<dataset>/stopped.json, which the tables read)."""
        return tables.stopped_runs(self.results, self.override.stability)

    def record_stopped(self, name: str, why: str | None) -> None:
        """Record (or, with None, clear) a run's stop under this plan's stability setting, under every
        name sharing its directory; another setting's records in the same folder stay as they are."""
        before = tables.stopped_records(self.results)
        names = {name} | {sharer for sharer, owner in self.shared().items() if owner == name}
        mine = self.override.stability
        stopped = [r for r in before if not (r["run"] in names and r["stability"] in (None, mine))]
        if why is not None:
            stopped += [{"run": n, "stability": mine, "why": why} for n in sorted(names)]
        stopped.sort(key=lambda r: (r["run"], str(r["stability"])))
        if stopped == before:
            return
        f = self.results / tables.STOPPED
        if not stopped:
            f.unlink(missing_ok=True)
            return
        self.results.mkdir(parents=True, exist_ok=True)
        write_text(f, json.dumps(stopped, indent=1, sort_keys=True))


def make_plan(args) -> Plan:
    """The Plan for the parsed arguments; ValueError or DatasetError for anything that cannot work."""
    experiments = tuple(select(args.experiments))
    pairs = [",".join(str(d) for d in resolve_devices(p)) for p in (args.devices or [None])]
    if len(pairs) > 1 and args.nproc > 1:
        raise ValueError("--nproc runs each job on all of this node's GPUs; give one --devices, or --nproc 1")
    devices = resolve_devices(pairs[0])
    work = Path(args.work).resolve()
    synthetic = None
    if args.imagenet:
        source = {"imagenet": args.imagenet}
        name = data_name = "ilsvrc2012"
        scale = args.scale or "imagenet"
    elif args.imagenet2010 or args.data:
        source = {"folder": args.imagenet2010 or args.data}
        name = data_name = "ilsvrc2010" if args.imagenet2010 else Path(source["folder"]).resolve().name
        scale = args.scale or "imagenet"
    else:
        scale = args.scale or ("gpu" if devices[0].type == "cuda" else "cpu")
        synthetic = SCALES[scale].synthetic or SCALES["cpu"].synthetic
        if args.synthetic_size:
            size = args.synthetic_size.split(",")
            if len(size) != 3 or not all(x.strip().isdigit() for x in size) or int(size[0]) < 2 \
                    or min(int(x) for x in size) < 1:
                raise ValueError(f"--synthetic-size {args.synthetic_size!r}: give classes,train-per-class,"
                                 "val-per-class, e.g. 10,120,20 (at least 2 classes, 1 image each)")
            synthetic = tuple(int(x) for x in size)
        # a scale's own set is named by its classes and training images: cpu-full validates on more
        # images than cpu (SCALES), and its results stay results/synthetic-cpu-full
        own = synthetic == SCALES[scale].synthetic
        name = synthetic_name(*synthetic[:2], DEFAULT_SIZE[2]) if own else synthetic_name(*synthetic)
        # results/synthetic is the cpu scale's; other scales name themselves
        name = name if scale == "cpu" else f"{name}-{scale}"
        # with the generator's version: a new generator, new archives and cache
        data_name = synthetic_data_name(*synthetic, generator=args.generator)
        source = {"imagenet": str(work / "data" / data_name)}
    # a wrong folder is refused now, not after the first stage; listed once for every stage
    listed = open_source(**source) if synthetic is None else None
    classes = synthetic[0] if synthetic else len(listed.classes)
    override = Override(args.epochs, args.batch_size, args.stability).resolved(classes, scale)
    default = Override(args.epochs, args.batch_size).resolved(classes, scale)
    if override.stability != default.stability:  # results/<name>-paper: not where the default's results are
        name = f"{name}-{override.stability}"
    pretrain_listed = open_source(folder=args.pretrain_data) if args.pretrain_data else None
    if args.cifar and not (Path(args.cifar) / "cifar-10-batches-py").is_dir():
        raise ValueError(f"--cifar {args.cifar}: no cifar-10-batches-py folder inside (CIFAR-10's python "
                         "version, as torchvision unpacks it)")
    return Plan(
        experiments=experiments, devices=devices, device_pairs=tuple(pairs), scale=scale,
        dataset=(EMBEDDED_DATASET.format(args.generator) if synthetic
                 else {"ilsvrc2012": "ILSVRC-2012", "ilsvrc2010": "ILSVRC-2010"}.get(name, name)),
        source=source, listed=listed, pretrain_listed=pretrain_listed, synthetic=synthetic,
        generator=args.generator, work=work,
        cache=work / "cache" / data_name,
        runs=work / "runs" / data_name,
        results=Path(args.results or ROOT / "results" / name),
        override=override,
        cifar=args.cifar,
        nproc=args.nproc,
        pretrain_data=args.pretrain_data, ilsvrc2010=bool(args.imagenet2010),
        test_note=("ILSVRC-2012 test labels were never published; the test images are not ingested"
                   if args.imagenet else "this dataset has no test split"),
        started=time.time())


def title(text: str) -> None:
    print(f"\n== {text}", flush=True)


def up_to_date(out: Path, *inputs: Path | None) -> bool:
    return out.exists() and all(p is not None and p.exists() and out.stat().st_mtime >= p.stat().st_mtime
                                for p in inputs)


def newest(run_dir: Path) -> Path | None:
    ckpts = checkpoint.files(run_dir)
    return ckpts[-1] if ckpts else None


def saved_at(path: Path) -> str | None:
    """When a checkpoint was written, by its own record (None if it does not load)."""
    try:
        return checkpoint.load(path, mmap=True).get("saved_at")
    except Exception:  # noqa: BLE001 — unreadable: not the checkpoint an evaluation recorded
        return None


def evaluated(out: Path, dirs: list[Path], root: Path) -> bool:
    """Whether `out` is an evaluation of exactly the newest checkpoint of each run directory, made
    after them: by the checkpoints it records (path and time written), not only by its date (a
    results folder from a fresh clone is newer than every run, however old its numbers; a run
    trained again writes a checkpoint of the same name)."""
    latest = [newest(d) for d in dirs]
    if not up_to_date(out, *latest):
        return False
    made = json.loads(out.read_text())
    if any("wrong" not in e for e in made.get("ensemble", {}).values()):  # made before per-image errors
        return False
    recorded = [(c["path"], c.get("saved_at")) for c in made.get("checkpoints", [])]
    return recorded == [(shown(p, root), saved_at(p)) for p in latest]


# ---------------------------------------------------------------- stages

def prepare_data(plan: Plan) -> Cache:
    title(f"1. data: prepare {plan.dataset} (§2) → {plan.cache}")
    if plan.synthetic:
        write_synthetic_ilsvrc(plan.source["imagenet"], *plan.synthetic, progress=False,
                               generator=plan.generator)
    source = plan.listed or open_source(**plan.source)
    if not (plan.cache / "meta.json").exists():
        check_space(source, plan.cache)
    print(format_report(prepare(source, plan.cache, progress=False)))
    if plan.pretrain_data and any(run.data == "pretrain" for _, run, _ in plan.runs_of()):
        title(f"1b. data: prepare the pre-training set {plan.pretrain_data} (1 CNN*) → {plan.pretrain_cache}")
        source = plan.pretrain_listed
        if not (plan.pretrain_cache / "meta.json").exists():
            check_space(source, plan.pretrain_cache)
        print(format_report(prepare(source, plan.pretrain_cache, progress=False)))
    return Cache(plan.cache)


# epochs of seconds (a fast GPU, a small set): a checkpoint about this often, not every epoch
CHECKPOINT_SECONDS = 60


@dataclass(frozen=True, eq=False)
class Job:
    """One training run as run_all carries it out: what it learns, how, and on which data."""
    run: Run
    config: AlexNetConfig
    options: TrainOptions
    data: Cache

    @property
    def depends_on(self) -> str | None:
        """The run whose final weights it starts from (its pre-training), which must finish first."""
        return self.run.init_from


def train(plan: Plan, cache: Cache, rate: float | None = None) -> None:
    """Every selected run, one after another (or one per device pair). `rate`: the compute
    plan's training images/s, which sets how many epochs go between checkpoints."""
    title("2. train (§5)")
    for exp in plan.experiments:
        if exp.needs and not plan.pretrain_data:
            print(f"skip {exp.name}: {exp.needs}")
        elif plan.size(exp) is None and exp.runs:
            print(f"skip {exp.name}: not run at the {plan.scale} scale (--scale cpu-full runs it)")
    dirs = {run.name: run_dir for _, run, run_dir in plan.runs_of()}
    shared = plan.shared()
    jobs = []
    for exp, run, run_dir in plan.runs_of():
        if run.name in shared:
            print(f"{run.name}: the same run as {shared[run.name]} (profile, overrides, seed and size): "
                  f"trained once, in {run_dir}")
            continue
        size = plan.size(exp)
        data = Cache(plan.pretrain_cache) if run.data == "pretrain" else cache
        cfg = run_config(run, size, num_classes=len(data.classes))
        was = trained_with(run_dir)
        if any(checkpoint.epoch_of(p) == size.epochs for p in checkpoint.files(run_dir)) and \
                (was is None or not was.differences(cfg)):  # another config: training says so
            print(f"done already: {run.name}")
            plan.record_stopped(run.name, None)
            continue
        print(f"train {run.name}: profile {run.profile}, seed {run.seed}, {size.describe()}"
              + (f", {run.overrides}" if run.overrides else "")
              + (f", stability setting {size.stability} (ε {cfg.lr:g}, biases {cfg.bias_init:g}"
                 + (f", fc6 and fc7 {cfg.fc_bias_init:g}" if cfg.fc_bias_init is not None else "") + ")"
                 if size.stability else "")
              + (f", on {plan.pretrain_data}" if run.data == "pretrain" else "")
              + (f", from {run.init_from}" if run.init_from else "") + f" → {run_dir}", flush=True)
        per_epoch = size.train_batches * size.batch_size or data.size("train")
        every = max(1, int(CHECKPOINT_SECONDS * rate / per_epoch)) if rate else 1
        if every > 1:
            print(f"  {run.name}: a checkpoint every {every} epochs and after the last (an epoch takes about "
                  f"{per_epoch / rate:.1f} s at the planned rate)")
        opts = TrainOptions(cache=data.root, run_dir=run_dir, devices=plan.devices, progress=False,
                            train_batches=size.train_batches, keep=2 if exp.scale == "main" else 1,
                            checkpoint_epochs=every, init_from=dirs[run.init_from] if run.init_from else None,
                            workers=shared_workers(len(plan.device_pairs)))
        jobs.append(Job(run, cfg, opts, data))
    if len(plan.device_pairs) > 1:
        return train_concurrently(plan, jobs)
    stopped = []
    for job in jobs:
        run, cfg, opts = job.run, job.config, job.options
        if job.depends_on in stopped:
            stopped.append(_not_trained(plan, job))
            continue
        before = nonfinite_mark(opts.run_dir)
        if plan.nproc > 1:
            code = subprocess.run(job_command(cfg, opts, plan.nproc), cwd=ROOT).returncode
        else:
            try:
                code = fit(cfg, opts, job.data)
            except NonFiniteLoss as e:  # one run's divergence does not stop the others; the tables say so
                print(f"{run.name}: {e}", flush=True)
                code = EXIT_NONFINITE
        if _job_stopped(plan, job, code, before):
            stopped.append(run.name)
            continue
        if code == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        _check_job(opts, code)
        plan.record_stopped(run.name, None)
    if stopped:
        print(f"stopped: {', '.join(stopped)} (run the same command again to retry from their last good "
              "checkpoints)")


def trained_with(run_dir: Path) -> AlexNetConfig | None:
    """The config a run directory's run was started with (its config.json), None if it has none."""
    path = run_dir / "config.json"
    if not path.exists():
        return None
    return AlexNetConfig.from_dict(json.loads(path.read_text())["config"])


def shared_workers(jobs: int) -> int | None:
    """Loader processes per run when `jobs` runs train at once (one per device pair), so that they
    share the cores instead of each starting one per core; None (the trainer's own choice) for one."""
    return cores_each(jobs) if jobs > 1 else None


def job_command(cfg, opts: TrainOptions, nproc: int, devices: str | None = None) -> list[str]:
    """`python -m alexnet.train` for one run in its own process (a torchrun job of `nproc`
    replicas when nproc > 1), given the run's whole config and options as JSON files beside its
    directory; only the devices go as a flag (each torchrun rank resolves its own)."""
    run_dir = Path(opts.run_dir)
    config, options = (run_dir.with_name(f"{run_dir.name}.{what}.json") for what in ("config", "options"))
    config.parent.mkdir(parents=True, exist_ok=True)
    write_text(config, json.dumps(cfg.to_dict(), indent=1))
    whole = dataclasses.replace(opts, devices=None, progress=False)
    write_text(options, json.dumps(whole.to_dict(), indent=1))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                f"--shutdown-timeout={SHUTDOWN_TIMEOUT_S}"]  # time for rank 0's checkpoint after a SIGTERM
    launch = (torchrun if nproc > 1 else [sys.executable]) + ["-m"]
    cmd = launch + ["alexnet.train", "--cache", str(opts.cache), "--run-dir", str(opts.run_dir),
                    "--config", str(config), "--options", str(options)]
    if nproc > 1:  # torchrun: each rank takes GPUs 2r, 2r+1 of the node, or the CPU
        return cmd + (["--devices", "cpu"] if opts.devices and opts.devices[0].type == "cpu" else [])
    return cmd + ["--devices", devices or ",".join(str(d) for d in opts.devices)]


def nonfinite_mark(run_dir) -> tuple | None:
    """Which nonfinite.json a run directory holds now (inode and time: a new record is a new file),
    None for none: a job that ends with a record other than this one stopped on a non-finite loss."""
    try:
        st = (Path(run_dir) / NONFINITE).stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def diverged(run_dir, before: tuple | None, code: int) -> str | None:
    """Why a training job stopped on a non-finite loss, from the nonfinite.json it wrote into its run
    directory (`before`: nonfinite_mark at its start); None when it did not. Known by the run directory,
    not the exit status: a torchrun job whose rank stopped exits 1, as for any other failure."""
    if code == 0 or nonfinite_mark(run_dir) in (None, before):
        return None
    r = json.loads((Path(run_dir) / NONFINITE).read_text())
    return f"loss is {r['loss']} at epoch {r['epoch']}, step {r['step']}"


def _job_stopped(plan: Plan, job: Job, code: int, before: tuple | None) -> bool:
    """A training job that stopped on a non-finite loss: recorded, and run_all goes on. The same rule
    on every path: one process, a torchrun job, concurrent pairs."""
    why = diverged(job.options.run_dir, before, code)
    if why is None:
        return False
    plan.record_stopped(job.run.name, why)
    print(f"{job.run.name}: stopped ({why}); going on with the other runs; its rows will say it stopped "
          f"(not a result); `python -m tools.replay {job.options.run_dir}` replays the step", flush=True)
    return True


def _not_trained(plan: Plan, job: Job) -> str:
    """The one dependency rule: a run fine-tuned from a pre-training that stopped is not trained
    (nor tabled); its rows say why."""
    why = f"{tables.NOT_TRAINED} {job.depends_on}, its pre-training, stopped"
    plan.record_stopped(job.run.name, why)
    print(f"{job.run.name}: {why}", flush=True)
    return job.run.name


def open_log(run_dir, command: list[str]):
    """<run-dir>.log, appended to (a retry keeps the output of the attempt a stop points to), with a
    line that says when this attempt started and what it ran."""
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = open(run_dir.with_name(run_dir.name + ".log"), "a")
    log.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(command)}\n")
    log.flush()
    return log


def _check_job(opts: TrainOptions, code: int) -> None:
    if code not in (0, EXIT_INTERRUPTED):
        raise ValueError(f"the training process for {opts.run_dir} ended with exit status {code} "
                         "(its output is above, or in its .log beside the run directory)")


def train_concurrently(plan: Plan, jobs: list[Job]) -> None:
    """Several runs at once, one per device pair (--devices given more than once): each in its
    own process, its output in <run-dir>.log; a fine-tuning run waits for its pre-training."""
    pending, running, finished = list(jobs), {}, set()
    waiting_on = {job.run.name for job in jobs}
    try:
        _schedule(plan, pending, running, finished, waiting_on)
    finally:
        for proc, _, log, _ in running.values():  # an error or Ctrl-C: the others checkpoint and stop too
            proc.send_signal(signal.SIGINT)
            proc.wait()
            log.close()


def _schedule(plan: Plan, pending: list[Job], running: dict, finished: set, waiting_on: set) -> None:
    stopped = []
    while pending or running:
        for waiting in [j for j in pending if j.depends_on in stopped]:  # the one dependency rule
            pending.remove(waiting)
            stopped.append(_not_trained(plan, waiting))
        for slot, pair in enumerate(plan.device_pairs):  # by slot: a pair given twice trains two runs on it
            if slot in running or not pending:
                continue
            blocked = waiting_on - finished
            ready = next((j for j in pending if j.depends_on not in blocked), None)
            if ready is None:
                break
            pending.remove(ready)
            command = job_command(ready.config, ready.options, plan.nproc, pair)
            log = open_log(ready.options.run_dir, command)
            running[slot] = (subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT),
                             ready, log, nonfinite_mark(ready.options.run_dir))
            print(f"started {ready.run.name} on {pair} (log: {log.name})", flush=True)
        for slot, (proc, job, log, before) in list(running.items()):
            run, opts = job.run, job.options
            if proc.poll() is None:
                continue
            log.close()
            del running[slot]
            print(f"finished {run.name} on {plan.device_pairs[slot]}: exit status {proc.returncode}",
                  flush=True)
            if _job_stopped(plan, job, proc.returncode, before):  # and so do the runs fine-tuned from it
                stopped.append(run.name)
                continue
            if proc.returncode == EXIT_INTERRUPTED:
                raise KeyboardInterrupt
            _check_job(opts, proc.returncode)
            plan.record_stopped(run.name, None)
            finished.add(run.name)
        time.sleep(1)


def evaluate(plan: Plan, cache: Cache) -> None:
    title("3. evaluate (§4.1: centre patch and ten patches)")
    (plan.results / "logs").mkdir(parents=True, exist_ok=True)
    dir_of = {}
    for _, run, run_dir in plan.runs_of():
        dir_of[run.name] = run_dir
        if (run_dir / "log.jsonl").exists():
            shutil.copy(run_dir / "log.jsonl", plan.results / "logs" / f"{run.name}.jsonl")
    stopped = plan.stopped()
    stopped_dirs = {d for _, r, d in plan.runs_of() if r.name in stopped}
    for ev in (ev for ev in EVALUATIONS.values() if all(r in dir_of for r in ev.runs)):
        name, dirs = ev.name, [dir_of[r] for r in ev.runs]
        out = plan.results / "eval" / f"{name}.json"
        if stopped_dirs & set(dirs):  # no result: the tables say why (stopped.json)
            why = tables.stopped_note(ev.runs, stopped) or "a run of it stopped"
            print(f"not evaluated: {name} ({why})")
            out.unlink(missing_ok=True)
            continue
        train = plan.results / "eval" / f"{ev.train_name}.json"  # training error: no augmentation, dropout
        if cache.size("train") <= TRAIN_SPLIT_IMAGES and not evaluated(train, dirs, plan.work):
            save_errors(cache, dirs, train, "train", ("center",), plan.devices, batch_size=50, root=plan.work)
        if evaluated(out, dirs, plan.work):
            print(f"done already: {out.name}")
            continue
        save_errors(cache, dirs, out, "val", ev.views, plan.devices, batch_size=50, root=plan.work)
        if ev is MAIN and plan.ilsvrc2010 and "test" in cache.splits:  # Table 1 is ILSVRC-2010's test set
            save_errors(cache, dirs, plan.results / "eval" / f"{ev.test_name}.json", "test", ev.views,
                        plan.devices, root=plan.work)
    main = [d for r, d in dir_of.items() if r in MAIN.runs and d not in stopped_dirs]
    out = plan.results / "eval" / f"{MAIN.dropout_name}.json"  # §4.2's ×0.5 against the geometric mean
    if main and trained_with(main[0]).dropout and not evaluated(out, main, plan.work):
        save_dropout_mean(cache, main[0], out, "val", DROPOUT_MASKS, plan.devices, root=plan.work)
    shared = plan.shared()  # baseline-short where it is 1 CNN's run: one file, 1cnn's
    keep_conv1(plan, {name: d for name, d in dir_of.items() if d not in stopped_dirs and name not in shared})


DROPOUT_MASKS = 16  # dropout networks whose geometric mean 1 CNN's ×0.5 is compared with (§4.2)

# Each evaluation is also made on the training split (centre patch, the net in eval mode), where it is at
# most this large (the embedded sets: 1,200 to 8,000 images): the train − validation gap of §4's
# overfitting claims (reproduce/claims.py), free of the augmentation and dropout in the log's error.
TRAIN_SPLIT_IMAGES = 20_000


def keep_conv1(plan: Plan, dir_of: dict[str, Path]) -> None:
    """Each finished run's conv1 kernels (K×3×11×11 float32, tower 0 first: 139 KB for 96) in
    <results>/conv1/<run>.npy, beside its log: §6.1's claim about the towers' kernels is judged on every
    run (reproduce/claims.py), where Figure 3 draws only 1 CNN's. Beside it, <run>.json records the
    checkpoint it came from (path and time written, as an evaluation does): the file is kept only while
    that is the run's newest checkpoint, not by its date (a file from a pull is newer than every run)."""
    for name, run_dir in dir_of.items():
        out, last, was = plan.results / "conv1" / f"{name}.npy", newest(run_dir), trained_with(run_dir)
        source = out.with_suffix(".json")
        if last is None or was is None or checkpoint.epoch_of(last) < was.epochs or \
                (out.exists() and evaluated(source, [run_dir], plan.work)):
            continue  # not trained to its end, or kept already
        model, _, _ = load_model(run_dir, "cpu")
        out.parent.mkdir(parents=True, exist_ok=True)
        figures.write_npy(out, model.conv1_kernels().numpy())
        write_text(source, json.dumps({"checkpoints": [{"path": shown(last, plan.work),
                                                         "saved_at": saved_at(last)}]}, indent=1))
        print(f"conv1 kernels → {out}")


def extract_features(plan: Plan, cache: Cache, run_dir: Path) -> Path:
    title("4. features of the last hidden layer (§6.1, Figure 4)")
    feats = run_dir / "features"
    feats.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        out = feats / f"{split}.npy"  # and {split}.meta.npz
        if up_to_date(out, newest(run_dir)):
            print(f"done already: {out}")
            continue
        save_features(cache, run_dir, out, split, plan.devices, batch_size=50, root=plan.work)
    return feats


def relu_vs_tanh(plan: Plan) -> None:
    """Figure 1's curves, made in the work folder as a training run is (runs/<dataset>/figure1-*.json),
    then copied to the results: a committed results/<name>/figure1.json is an output, never taken
    for this machine's run. A made file is reused while its code digest (figure1.code_key) and its
    size (the scale's Figure1Size) match."""
    title("5. Figure 1: ReLU vs tanh (four-layer CIFAR-10 net stand-in)")
    size = SCALES[plan.scale].figure1
    made = plan.runs / f"figure1-{'cifar10' if plan.cifar else plan.cache.name}-{plan.scale}.json"
    if figure1.made_by_this_code(made, size):
        print(f"done already: {made}")
    else:
        if made.exists():
            print(f"{made} was made by other code or at another size (figure1.py, the training step, the "
                  "update rule, the layers or the scale's Figure1Size have changed since): made again")
        figure1.run(made, size, cache=None if plan.cifar else plan.cache, cifar=plan.cifar)
    plan.results.mkdir(parents=True, exist_ok=True)
    write_text(plan.results / "figure1.json", made.read_text())


def tables_and_figures(plan: Plan, cache: Cache, features: Path | None) -> None:
    title("6. tables and figures")
    out = tables.write_tables(plan.results, plan.dataset, plan.scale, plan.ilsvrc2010, plan.test_note,
                              plan.override)
    print(f"tables → {out}")
    why = plan.stopped().get(MAIN.runs[0])
    if why:  # no Figure 3 or 4 now; an earlier 1 CNN's would pass for this one's
        for stale in (plan.results / "figures" / name for name in figures.MAIN_RUN_FIGURES):
            if stale.exists():
                stale.unlink()
                print(f"removed {stale}: {MAIN.runs[0]} stopped ({why}), so there is no Figure 3 or 4")
    figures.make_figures(plan.results, cache, plan.dataset, run=plan.main_run(), features=features,
                         stability=plan.override.stability)
    title("7. the paper's claims beyond its tables (reproduce/claims.py)")
    print(f"claims → {claims.write_claims(plan.results, plan.dataset, plan.scale, plan.override)}")


def stages(plan: Plan, rate: float | None = None) -> None:
    cache = prepare_data(plan)
    train(plan, cache, rate)
    evaluate(plan, cache)
    features = extract_features(plan, cache, plan.main_run()) if plan.main_run() else None
    if FIGURE1.name in {e.name for e in plan.experiments}:
        relu_vs_tanh(plan)
    tables_and_figures(plan, cache, features)


def fits_one_batch(plan: Plan, argv: list[str]) -> None:
    """ValueError, with the command that works, when the training set is smaller than a run's
    batch: an epoch drops its last incomplete batch, so it would take no step at all."""
    n = plan.counts[0].get("train", 0)
    batch = max((plan.size(exp).batch_size for exp, _, _ in plan.runs_of()), default=0)
    if not n or n >= batch:
        return
    fits = 2 ** max(0, (n // 4).bit_length() - 1)  # a power of two that gives at least 4 steps an epoch
    kept, skip = [], False
    for a in argv:  # the user's command without its batch size
        if skip or a in ("-b", "--batch-size"):
            skip = not skip
        elif not a.startswith("--batch-size="):
            kept.append(a)
    whose = f"--batch-size {batch}" if plan.override.batch_size else f"the {plan.scale} scale's"
    raise ValueError(f"{next(iter(plan.source.values()))}: {n} training images, fewer than one batch of "
                     f"{batch} ({whose}): no epoch would take a step. A batch of {fits} "
                     f"gives {n // fits} steps an epoch:\n  bash reproduce/run_all.sh "
                     f"{shlex.join(kept + ['--batch-size', str(fits)])}")


def main(argv=None) -> int:
    ap, args = parse_args(argv)
    try:
        plan = make_plan(args)
        fits_one_batch(plan, sys.argv[1:] if argv is None else list(argv))
    except (ValueError, DatasetError) as e:
        ap.error(str(e))
    seconds = float(os.environ.get("ALEXNET_PLAN_SECONDS", "30"))  # rate measurement when no benchmark fits
    if args.dry_run:
        print(compute_plan(plan, ROOT, seconds)[0], end="")
        return 0
    try:
        with RunLock(plan.results, what="run_all"):  # two run_all on one results folder: the second refuses
            text, info = compute_plan(plan, ROOT, seconds)
            print(text, end="", flush=True)
            stages(plan, info.get("rate"))
    except RunLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue where it stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (NonFiniteLoss, checkpoint.DiskFull, ValueError, OSError) as e:
        msg = e.strerror if isinstance(e, checkpoint.DiskFull) else e
        print(f"error: {msg}\nFix what it says and run the same command again: "
              "finished stages are skipped.", file=sys.stderr)
        return 1
    minutes = (time.time() - plan.started) / 60
    print(f"\nall done in {minutes:.1f} min: tables in {plan.results / 'tables'}, figures in "
          f"{plan.results / 'figures'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
