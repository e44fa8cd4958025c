"""The stability study: the paper's recipe in its first steps, across classes,
batch, bias init, ε and dropout, on the CPU.

    python -m reproduce.stability                       # the committed grid: about 35 min on 2 cores
    python -m reproduce.stability --only c10-b32 --seeds 1   # a subset, for a quick look

Each run trains the paper profile (the whole net, nothing shrunk) from its
initial weights for a fixed number of steps on an embedded synthetic set of C
classes with the same 40 training images per class, and logs every step's loss
and `alexnet.diagnostics.LayerProbe` row. A run *diverges* when a loss is not
finite or exceeds 2·ln C; it is *dead* when fc8's input is all zero at the end
(every fc7 unit off: the loss stays at ln C for good). Beside each run: the
stability number ε·‖h‖²/C at its first step (h: fc8's input), which the study
compares with heavy-ball SGD's limit 2(1 + μ) = 3.8 (reproduce/PAPER.md, "Stability").

Writes <out>/stability.json (every run, every step; rewritten after each run,
so a stopped study resumes where it was), stability.md (one row per cell) and
stability.png (loss / ln C per step). The datasets go to <work>.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from alexnet.atomic import write_text
from alexnet.config import AlexNetConfig
from alexnet.data.synthetic import GENERATOR_VERSION, GENERATORS
from alexnet.diagnostics import curvature_number, kick, momentum_limit

from .experiments import STABILITY, STABLE

IMAGES_PER_CLASS = 40  # training images per class, the same for every class count
MOMENTUM_LIMIT = momentum_limit(0.9)  # 2(1 + μ) = 3.8 for §5's μ = 0.9


@dataclass(frozen=True)
class Cell:
    """One configuration of the grid: the paper profile with these fields changed."""
    classes: int
    batch: int = 32
    lr: float = 0.01
    dropout: float = 0.5
    bias_init: float = 1.0
    pool_kernel: int = 3
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 60
    per_class: int = IMAGES_PER_CLASS  # training images per class of its synthetic set
    setting: str = ""  # a recipe setting (experiments.STABILITY) applied on top of lr and bias_init

    @property
    def name(self) -> str:
        recipe = f"-{self.setting}" if self.setting else f"-lr{self.lr:g}-bias{self.bias_init:g}"
        return (f"c{self.classes}" + (f"x{self.per_class}" if self.per_class != IMAGES_PER_CLASS else "")
                + f"-b{self.batch}{recipe}"
                + f"-{'drop' if self.dropout else 'nodrop'}" + ("-pool2" if self.pool_kernel == 2 else ""))

    def config(self, seed: int) -> AlexNetConfig:
        """The run's AlexNetConfig: the paper profile with this cell's fields, and its setting."""
        cfg = AlexNetConfig.from_profile("paper", num_classes=self.classes, batch_size=self.batch, lr=self.lr,
                                         dropout=self.dropout, bias_init=self.bias_init,
                                         pool_kernel=self.pool_kernel, seed=seed)
        return STABILITY[self.setting].apply(cfg) if self.setting else cfg

    def trains(self) -> str:
        """What its runs train, whatever the setting that makes it is called: the steps and the config
        (seed 0) without the setting's name, as one string. At batch 128 `per-image-lr-bias0.1` trains
        what `bias0.1` does, and so does a cell of ε 0.01 and bias 0.1."""
        cfg = self.config(0).to_dict()
        cfg.pop("stability", None)
        return json.dumps([self.steps, cfg], sort_keys=True)

    @property
    def key(self) -> str:
        """What a run of this cell is filed under: its name and its step count (every field but the
        seeds), so a quick --steps look is never taken for the grid's runs."""
        return f"{self.name}-{self.steps}steps"


def setting(name: str, batch: int) -> dict:
    """A STABILITY setting's ε and bias init at a batch, as Cell fields (the setting applied, not
    restated)."""
    cfg = STABILITY[name].apply(AlexNetConfig.from_profile("paper", batch_size=batch))
    return {"batch": batch, "lr": cfg.lr, "bias_init": cfg.bias_init}


def _both(**kw) -> list[Cell]:
    """The cell with dropout on and off."""
    return [Cell(dropout=p, **kw) for p in (0.5, 0.0)]


# In order of what the decision needs first, so a study cut short still answers it. Three seeds where
# the paper's recipe diverges; fewer, and fewer steps, where the stability number predicts calm: the
# grid is sized to about 35 min of a 2-core CPU.
GRID: list[Cell] = [
    *_both(classes=10),  # the cpu and cpu-full scales' recipe (ε 0.01 at batch 32)
    *_both(classes=10, bias_init=0.1),  # Caffe's bias
    *_both(classes=10, lr=0.0025),  # the paper's ε per image at batch 32 (0.01 × 32/128)
    *_both(classes=100, steps=30),  # the gpu scale's classes
    *_both(classes=1000, seeds=(0,), steps=30),  # ImageNet's classes
    *_both(classes=10, lr=0.0025, bias_init=0.1),  # both: the paper's ε per image and Caffe's bias
    Cell(classes=10, lr=0.005, seeds=(0,)),  # half the ε
    Cell(classes=10, lr=0.005, dropout=0.0),
    Cell(classes=10, batch=128, seeds=(0,), steps=15),  # the paper's batch at 10 classes
    Cell(classes=10, batch=128, dropout=0.0, steps=15),
]


# The fragile configurations of the GPU run (1 CNN and the 5 CNNs' seeds, no-dropout, pool-z2) at the
# scales' own sets and batches, for their first two epochs, under the chosen settings
# (reproduce/PAPER.md, "Stability"): cpu-full (10 classes × 120, batch 32: 37 steps an epoch) with ε at
# the paper's rate per image and Caffe's bias 0.1; the gpu scale (100 classes × 80, batch 128: 62 steps
# an epoch) under the paper's values to step 40 (on the CPU a step takes 6 s), past the steps at which
# the H200 run went non-finite with these seeds (results/history/gpu-h200-20261127: steps 12–40), and
# under its setting for two epochs.
CPU_FULL = dict(classes=10, per_class=120, steps=74, **setting(STABLE, batch=32))
GPU = dict(classes=100, per_class=80, batch=128, steps=40)
GPU_STABLE = dict(GPU, steps=124, **setting(STABLE, batch=128))
FRAGILE: list[Cell] = [
    Cell(**CPU_FULL),  # 1 CNN (seed 0) and two of the 5 CNNs (seeds 1, 2)
    Cell(**CPU_FULL, dropout=0.0),
    Cell(**CPU_FULL, pool_kernel=2),
    Cell(**GPU, seeds=(0, 2, 5)),  # the H200's NaN steps: 1 CNN 40; 5cnns-seed2 12; 5cnns-seed5 35 and 28
    Cell(**GPU, seeds=(0,), dropout=0.0),  # no-dropout: step 12
    Cell(**GPU, seeds=(0,), pool_kernel=2),  # pool-z2: step 19
    # the gpu scale's setting since no-dropout died under the paper's values
    # (results/stability/gpu-nodrop-2epochs/): biases 0.1 (ε at batch 128 is the paper's), two epochs,
    # three seeds of each fragile configuration
    Cell(**GPU_STABLE, seeds=(0, 2, 5)),
    Cell(**GPU_STABLE, dropout=0.0),
    Cell(**GPU_STABLE, pool_kernel=2),
]

# The recipe study (reproduce/recipe.py): every candidate setting, and §5's values (""), on the fragile
# configurations at the scales' own sets, two epochs, three seeds. cpu-full first, in the order the
# choice needs them; the gpu scale's cells (62 steps an epoch, 6 s a step on 2 cores) after.
RECIPE_SETTINGS = ("fc-bias-kick-matched", "fc-bias0.1", "warmup1", "bias0.1", "", "per-image-lr-bias0.1")


def _fragile(setting: str, **scale) -> list[Cell]:
    """1 CNN's configuration, no-dropout and pool-z2, seeds 0–2, under `setting`."""
    return [Cell(**scale, setting=setting, dropout=p, pool_kernel=k)
            for p, k in ((0.5, 3), (0.0, 3), (0.5, 2))]


RECIPE_SCALES = {"cpu-full": dict(classes=10, per_class=120, batch=32, steps=74),
                 "gpu": dict(classes=100, per_class=80, batch=128, steps=124)}
RECIPE: list[Cell] = [cell for scale in RECIPE_SCALES.values() for setting in RECIPE_SETTINGS
                      for cell in _fragile(setting, **scale)]
GRIDS = {"stability": GRID, "fragile": FRAGILE, "recipe": RECIPE}


def dataset(work: Path, classes: int, per_class: int = IMAGES_PER_CLASS,
            generator: int | None = None) -> Path:
    """The cache of the synthetic set with `classes` classes of `per_class` training images (made on
    first use; a new generator version makes a new one; default: alexnet.data.synthetic's default)."""
    from alexnet.data.prepare import prepare
    from alexnet.data.sources import open_source
    from alexnet.data.synthetic import write_synthetic_ilsvrc
    generator = generator or GENERATOR_VERSION
    name = (f"c{classes}" + (f"x{per_class}" if per_class != IMAGES_PER_CLASS else "")
            + f"-g{generator}")
    cache = work / "cache" / name
    if not (cache / "meta.json").exists():
        raw = work / "data" / name
        write_synthetic_ilsvrc(raw, classes, per_class, 1, progress=False, generator=generator)
        prepare(open_source(imagenet=str(raw)), cache, progress=False)
    return cache


def run(cell: Cell, seed: int, cache: Path, devices: str = "cpu") -> dict:
    """`cell.steps` steps of the paper profile from its initial weights: one probe row per step."""

    from alexnet.diagnostics import LayerProbe
    from alexnet.engine import Trainer, TrainOptions, train_step
    cfg = cell.config(seed)
    trainer = Trainer(cfg, TrainOptions(cache=cache, run_dir="unused", devices=devices, workers=0,
                                        progress=False))
    probe, loader, rows = LayerProbe(trainer.net), trainer.train_loader, []
    t0 = time.perf_counter()
    while len(rows) < cell.steps and not (rows and not math.isfinite(rows[-1]["loss"])):
        loader.lighting = cfg.pca_lighting
        for x, y in loader:  # epoch after epoch: the loader moves on by itself
            trainer.step = len(rows)
            trainer.seed_dropout()  # the masks the trainer draws at this step
            trainer.warm_up()  # ε as the trainer sets it at this step (a warmup's, at the first epoch's ε)
            stats = train_step(trainer.forward, trainer.opt, x, y).tolist()
            rows.append({"step": len(rows) + 1, "loss": stats[0] / stats[3], **probe.row()})
            if len(rows) == cell.steps or not math.isfinite(rows[-1]["loss"]):
                break
    probe.close()
    return {"cell": cell.name, "key": cell.key, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
            "lr": cfg.lr, "steps_per_epoch": len(loader),
            "curvature_number": curvature_number(cfg.lr, rows[0]["fc8_input_sq"], cell.classes),
            **outcome(rows, cell.classes), **course(rows, cell.classes, len(loader)), "steps": rows}


def _run_alone(task: tuple) -> tuple[Cell, dict]:
    """One run in a pool's process, on its share of the cores."""
    import torch
    *args, threads = task
    torch.set_num_threads(threads)
    return args[0], run(*args)


def each_run(todo: list[tuple], jobs: int = 1):
    """(cell, run's record) for each (cell, seed, cache, devices) of `todo` as it finishes: one after
    another, or `jobs` at once, each in a process of its own (a new one for each run) with the cores
    shared out."""
    if jobs <= 1:
        yield from ((task[0], run(*task)) for task in todo)
        return
    import multiprocessing

    from alexnet.data.loader import cores_each
    with multiprocessing.get_context("spawn").Pool(jobs, maxtasksperchild=1) as pool:
        yield from pool.imap_unordered(_run_alone, [(*task, cores_each(jobs)) for task in todo])


def outcome(rows: list[dict], classes: int) -> dict:
    """diverged (a non-finite loss, or one above 2·ln C), dead (fc8's input all zero at the end), peak."""
    losses = [r["loss"] for r in rows]
    finite = all(math.isfinite(v) for v in losses)
    peak = max(losses) if finite else math.inf
    return {"peak_loss": peak, "overshoot": peak - math.log(classes), "nonfinite": not finite,
            "diverged": not finite or peak > 2 * math.log(classes),
            "dead": finite and rows[-1]["fc8_input_sq"] == 0.0, "final_loss": losses[-1]}


HALF_WINDOW = 10  # steps averaged for "steps to half of chance": one step's loss is one batch's


def course(rows: list[dict], classes: int, per_epoch: int) -> dict:
    """The recipe study's numbers of one run (reproduce/recipe.py): each epoch's mean loss; whether an
    epoch after the first averaged above 2·ln C (a failure) and whether a single step did while the epoch
    did not (a spike that recovered, reported but not a failure); and its speed, the first step at which
    the mean of the last HALF_WINDOW steps' losses is at most ½·ln C (None: not within the run)."""
    losses = [r["loss"] for r in rows]
    means = [float(np.mean(losses[i:i + per_epoch])) for i in range(0, len(losses), per_epoch)]
    high = 2 * math.log(classes)
    half = next((i + 1 for i in range(HALF_WINDOW - 1, len(losses))
                 if np.mean(losses[i + 1 - HALF_WINDOW:i + 1]) <= math.log(classes) / 2), None)
    return {"epoch_means": means, "high_epoch": any(not m <= high for m in means[1:]),
            "spike": any(v > high for v in losses) and all(m <= high for m in means[1:]),
            "steps_to_half": half}


def filed_under(run: dict, recorded_grid: list[dict]) -> str:
    """A run's cell key; a run recorded before keys were (2026-12-04) is filed under its cell's name and
    the step count of the grid its JSON records (those studies ran at their grid's steps)."""
    if "key" in run:
        return run["key"]
    steps = next(c["steps"] for c in recorded_grid
                 if Cell(**{**c, "seeds": tuple(c["seeds"])}).name == run["cell"])
    return f"{run['cell']}-{steps}steps"


def summarize(runs: list[dict], grid: list[Cell]) -> list[dict]:
    out = []
    for cell in grid:
        mine = [r for r in runs if r["key"] == cell.key]
        if not mine:
            continue
        h2 = [r["steps"][0]["fc8_input_sq"] for r in mine]
        lr = mine[0].get("lr", cell.lr)  # as trained: a setting may change the cell's ε
        out.append({**asdict(cell), "lr": lr, "cell": cell.name, "key": cell.key, "runs": len(mine),
                    "seeds": [r["seed"] for r in mine],
                    "diverged": sum(r["diverged"] for r in mine),
                    "nonfinite": sum(r["nonfinite"] for r in mine),
                    "dead": sum(r["dead"] for r in mine),
                    "overshoot_median": float(np.median([r["overshoot"] for r in mine])),
                    "kick": kick(lr, float(np.mean(h2)), cell.classes, cell.batch),
                    "curvature_number": curvature_number(lr, float(np.mean(h2)), cell.classes),
                    "seconds": sum(r["seconds"] for r in mine),
                    "steps": max(len(r["steps"]) for r in mine)})  # as run (--steps), not the grid's
    return out


TITLES = {"stability": "Stability study: the paper profile's first steps on the CPU",
          "fragile": "The fragile configurations' first steps under the chosen settings, on the CPU",
          "recipe": "The recipe study's first two epochs: every candidate setting, on the CPU"}


def markdown(summary: list[dict], meta: dict, grid: str = "stability") -> str:
    head = ("| classes × images | batch | ε | bias init | dropout | pool | seeds | diverged | of them "
            "non-finite | dead | overshoot above ln C (median) | kick (nats) | ε·‖h‖²/C | steps "
            "|\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = "".join(f"| {s['classes']} × {s['per_class']} | {s['batch']} | {s['lr']:g} | "
                   f"{s.get('setting') or format(s['bias_init'], 'g')} | "
                   f"{'0.5' if s['dropout'] else 'off'} | {s['pool_kernel']}/2 | "
                   f"{', '.join(map(str, s['seeds']))} | {s['diverged']} | {s['nonfinite']} | "
                   f"{s['dead']} | {s['overshoot_median']:+.2f} | {s['kick']:.2f} | "
                   f"{s['curvature_number']:.2f} | {s['steps']} |\n"
                   for s in summary)
    return (f"# {TITLES[grid]}\n\n"
            f"Made by `python -m reproduce.stability` ({meta['commit']}, {meta['date']}, {meta['machine']}; "
            f"{meta['minutes']:.0f} min). Embedded synthetic sets (classes × training images per class). "
            "Diverged: a non-finite loss or one above 2·ln C. Dead: fc8's input all zero at the end. "
            "From fc8's input h at the first step: the kick ε·‖h‖²·√(p(1−p)/B), p = 1/C, how far one step "
            "moves a logit by the batch's class mix alone; and ε·‖h‖²/C, ε times fc8's curvature, against "
            f"heavy-ball SGD's limit {MOMENTUM_LIMIT} (alexnet/diagnostics.py).\n\n" + head + rows)


def plot(runs: list[dict], summary: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(summary)
    cols = 4
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(4 * cols, 2.6 * -(-n // cols)), squeeze=False,
                             sharey=True)
    for ax, s in zip(axes.flat, summary):
        for r in (r for r in runs if r["key"] == s["key"]):
            y = [v["loss"] / math.log(s["classes"]) if math.isfinite(v["loss"]) else np.nan
                 for v in r["steps"]]
            ax.plot(range(1, len(y) + 1), y, lw=1,
                    label=f"seed {r['seed']}" + (" (NaN)" if r["nonfinite"] else ""))
        ax.axhline(1, color="grey", lw=0.5)
        ax.axhline(2, color="red", lw=0.5, ls="--")
        ax.set_title(f"C {s['classes']}, b {s['batch']}, ε {s['lr']:g}, bias {s['bias_init']:g}, "
                     f"{'drop' if s['dropout'] else 'no drop'}{', pool 2' if s['pool_kernel'] == 2 else ''}"
                     f"\nkick {s['kick']:.2f}, ε‖h‖²/C {s['curvature_number']:.2f}",
                     fontsize=8)
        ax.set_ylim(0, 4)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.supxlabel("step")
    fig.supylabel("loss / ln C (1 = chance; red: 2, diverged)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reproduce.stability", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/stability", help="where the JSON, table and plot go")
    ap.add_argument("--work", default="cache/stability", help="where the synthetic sets are made")
    ap.add_argument("--generator", type=int, choices=GENERATORS, default=GENERATOR_VERSION,
                    help=f"the synthetic sets' generator (default {GENERATOR_VERSION}; the folders made "
                         "before issue 48 used 2)")
    ap.add_argument("--grid", choices=GRIDS, default="stability",
                    help="stability: the study; fragile: the fragile configurations under the chosen "
                         "settings")
    ap.add_argument("--only", help="run only cells whose name starts with this (e.g. c10-b32)")
    ap.add_argument("--seeds", type=int, help="seeds per cell instead of the grid's")
    ap.add_argument("--steps", type=int, help="steps per run instead of the grid's")
    ap.add_argument("--devices", default="cpu",
                    help="the towers' devices: cpu (default), cuda:0 (both on one GPU) or cuda:0,cuda:1")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs at once, each in its own process with the cores shared out (CPU only). No "
                         "faster at batch 128 on 2 cores: two one-thread runs took 1,307–1,341 s, one "
                         "two-thread run about 600 s")
    args = ap.parse_args(argv)
    if args.jobs > 1 and args.devices != "cpu":
        ap.error("--jobs is for the CPU: runs on a GPU go one at a time")
    from alexnet.checkpoint import code_version
    from reproduce.tables import hardware
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    grid = [replace(c, steps=args.steps or c.steps) for c in GRIDS[args.grid]
            if not args.only or c.name.startswith(args.only)]
    if not grid:
        ap.error(f"--only {args.only}: no cell's name starts with it; names look like "
                 f"{GRIDS[args.grid][0].name}")
    path = out / f"{args.grid}.json"
    done = json.loads(path.read_text()) if path.exists() else {"runs": [], "grid": []}
    runs, t0, version = done["runs"], time.time(), code_version()  # the code this process runs
    for r in runs:
        r["key"] = filed_under(r, done["grid"])
    todo = [(cell, seed, dataset(work, cell.classes, cell.per_class, args.generator), args.devices)
            for cell in grid for seed in (range(args.seeds) if args.seeds else cell.seeds)
            if not any(r["key"] == cell.key and r["seed"] == seed for r in runs)]
    for cell, r in each_run(todo, args.jobs):
        runs.append(r)
        print(f"{cell.name} seed {r['seed']}: peak {r['peak_loss']:.2f} (ln C {math.log(cell.classes):.2f}), "
              f"final {r['final_loss']:.2f}, ε‖h‖²/C {r['curvature_number']:.2f}"
              f"{', DIVERGED' if r['diverged'] else ''}{', dead' if r['dead'] else ''} "
              f"({r['seconds']:.0f} s)",
              file=sys.stderr, flush=True)
        meta = {"commit": version, "date": time.strftime("%Y-%m-%d"), "machine": hardware(),
                "minutes": (done.get("minutes", 0) * 60 + time.time() - t0) / 60}
        cells = {c.key: asdict(c) for c in [*GRIDS[args.grid], *grid]}  # the grid and this call's --steps
        write_text(path, json.dumps({**meta, "grid": list(cells.values()), "runs": runs}))
    meta = json.loads(path.read_text())
    summary = summarize(runs, [*GRIDS[args.grid], *(c for c in grid if c not in GRIDS[args.grid])])
    write_text(out / f"{args.grid}.md", markdown(summary, meta, args.grid))
    plot(runs, summary, out / f"{args.grid}.png")
    print(f"wrote {out}/{args.grid}.json, .md, .png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
