"""The recipe study: which small-scale setting (reproduce/experiments.py, STABILITY) trains stably,
fast, with Figure 3's structure and a good final error, measured on the same runs.

    python -m reproduce.recipe measure                  # ‖h‖² against fc6/fc7's bias (kick-matched)
    python -m reproduce.stability --grid recipe --out results/recipe   # (a), (b): two epochs each
    bash reproduce/run_all.sh --scale cpu-full --stability SETTING --experiments 1cnn \\
        --results results/recipe/cpu-full-SETTING                       # (c), (d): 1 CNN, 14 epochs
    (... --experiments 1cnn,5cnns for (c) over six seeds)
    python -m reproduce.recipe table                    # results/recipe/criteria.md and .json
    python -m reproduce.recipe after-division RUN_DIR   # the epoch after ε ÷ 10, three ways

The four criteria of a candidate at a scale:
(a) stability: of its fragile runs (1 CNN's configuration, no-dropout and pool-z2, three seeds each, two
    epochs; reproduce/stability.py), how many went non-finite, died (fc8's input all zero at the end), or
    averaged above 2·ln C over an epoch after the first. A step above 2·ln C in an epoch that did not is a
    spike that recovered: reported, not a failure;
(b) speed: the steps until the mean of the last 10 steps' losses is at most ½·ln C (median over the
    runs that got there, and how many did), and the second epoch's mean loss;
(c) Figure 3: conv1's low-frequency share and orientedness (reproduce/figures.py's conv1_kernels.json)
    for 1 CNN after its 14 epochs; the target is the §5 run's structure at the same scale (≥ 0.5, ≥ 0.40);
    and over seeds, every kept run of 1 CNN's configuration (the 5 CNNs' members: seeds);
(d) final top-1: 1 CNN's (10 patches, and the centre patch) against the seed replicates' spread.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from alexnet.atomic import write_text
from alexnet.diagnostics import read_steps

from .experiments import STABILITY
from .stability import GRIDS, RECIPE_SCALES, RECIPE_SETTINGS, dataset

OUT = Path("results/recipe")
HISTORY = Path("results/history")  # superseded results folders, kept where their READMEs regenerate them
FIGURE3_TARGET = (0.5, 0.40)  # low-frequency share, orientedness: the §5 run's at cpu-full (0.55, 0.40)
BIASES = (0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


def label(setting: str) -> str:
    return setting or "paper (§5's values)"


# ---- ‖h‖² against fc6 and fc7's bias: what kick_matched_bias solves on ----

def measure(work: Path, out: Path) -> dict:
    """fc8's input ‖h‖² at the first step of the cpu-full and gpu scales' sets, seeds 0–2, for each bias in
    BIASES of fc6 and fc7 (every other bias §5's 1), dropout on and off; and a quadratic fit per dropout."""
    import torch

    from alexnet.config import AlexNetConfig
    from alexnet.diagnostics import LayerProbe
    from alexnet.engine import Trainer, TrainOptions
    rows = []
    for scale, s in RECIPE_SCALES.items():
        cache = dataset(work, s["classes"], s["per_class"])
        for b in BIASES:
            for dropout in (0.5, 0.0):
                for seed in (0, 1, 2):
                    cfg = AlexNetConfig.from_profile("paper", num_classes=s["classes"], batch_size=s["batch"],
                                                     seed=seed, fc_bias_init=b, dropout=dropout)
                    trainer = Trainer(cfg, TrainOptions(cache=cache, run_dir="unused", devices=("cpu", "cpu"),
                                                        workers=0, progress=False))
                    probe = LayerProbe(trainer.net)
                    x, _ = next(iter(trainer.train_loader))
                    with torch.no_grad():
                        trainer.forward(x)  # training mode: dropout's masks, as the first step has them
                    rows.append({"scale": scale, "fc_bias": b, "dropout": dropout, "seed": seed,
                                 "fc8_input_sq": float(probe.fc8_input_sq)})
                    probe.close()
            print(f"{scale} bias {b}: ‖h‖² {[round(r['fc8_input_sq']) for r in rows[-6:]]}", file=sys.stderr)
    fits = {}
    for dropout in (0.5, 0.0):
        mine = [r for r in rows if r["dropout"] == dropout]
        a, c, h0 = np.polyfit([r["fc_bias"] for r in mine], [r["fc8_input_sq"] for r in mine], 2)
        fits[str(dropout)] = {"a": round(float(a), 1), "c": round(float(c), 1), "h0": round(float(h0), 1)}
    result = {"what": "‖h‖² (fc8's input, mean over the first batch) against fc6 and fc7's initial bias, "
                      "every other bias §5's 1; fit ‖h‖² = a·b² + c·b + h0 over both sets and seeds",
              "fits": fits, "rows": rows, **provenance()}
    write_text(out / "fc8_input.json", json.dumps(result, indent=1))
    return result


def provenance() -> dict:
    from alexnet.checkpoint import code_version
    from reproduce.tables import hardware
    return {"commit": code_version(), "date": time.strftime("%Y-%m-%d"), "machine": hardware()}


# ---- runs of an earlier study that the grid's cells train again ----

def carry_over(source: Path, out: Path) -> list[str]:
    """Files the runs of an earlier study's JSON (`python -m reproduce.stability`'s, any grid) under the
    recipe grid's cells that train the same thing (Cell.trains: config and steps), into out/recipe.json,
    each with the course numbers the table needs and where it came from. Runs already there, or
    trained by no cell of the grid, are left. Returns what it filed."""
    from dataclasses import fields, replace

    from .stability import Cell, course, filed_under
    done = json.loads(source.read_text())
    path = out / "recipe.json"
    recipe = json.loads(path.read_text()) if path.exists() else {"runs": [], "grid": []}
    names = {f.name for f in fields(Cell)}
    theirs = [Cell(**{**{k: v for k, v in c.items() if k in names}, "seeds": tuple(c["seeds"])})
              for c in done["grid"]]
    theirs = {c.key: c for c in theirs}
    ours = {c.trains(): c for c in reversed(GRIDS["recipe"])}  # the first cell of the grid that trains it
    grid = {c.key: c for c in GRIDS["recipe"]}
    have = {(grid[r["key"]].trains(), r["seed"]) for r in recipe["runs"] if r["key"] in grid}
    filed = []
    for r in done["runs"]:
        cell = theirs[filed_under(r, done["grid"])]
        if not r["nonfinite"]:  # as run: a study's --steps went unrecorded before runs had keys
            cell = replace(cell, steps=len(r["steps"]))
        trained = cell.trains()
        target = ours.get(trained)
        if target is None or (trained, r["seed"]) in have:
            continue
        per_epoch = cell.classes * cell.per_class // cell.batch  # the loader drops the last partial batch
        recipe["runs"].append({**r, "key": target.key, "lr": r.get("lr", cell.config(r["seed"]).lr),
                               "steps_per_epoch": per_epoch,
                               "carried_over": f"{source} (run {done['date']} as {cell.name})",
                               **course(r["steps"], cell.classes, per_epoch)})
        have.add((trained, r["seed"]))
        filed.append(f"{cell.name} seed {r['seed']} → {target.key}")
    if filed:
        write_text(path, json.dumps(recipe))
    return filed


# ---- the table ----

def median(xs: list) -> float | None:
    return float(np.median(xs)) if xs else None


def failed(run: dict) -> bool:
    """Criterion (a): a non-finite loss, a dead net, or an epoch after the first above 2·ln C."""
    return run["nonfinite"] or run["dead"] or run["high_epoch"]


def first_epochs(runs: list[dict], scale: dict, setting: str) -> dict | None:
    """Criteria (a) and (b) of one setting's fragile runs at one scale (None: none ran yet). A run of
    another setting's cell that trains the same thing (Cell.trains) counts for both, once per seed."""
    own = [c for c in GRIDS["recipe"] if c.setting == setting
           and all(getattr(c, k) == v for k, v in scale.items())]
    trains = {c.trains(): c for c in own}
    cells = {c.key: trains[c.trains()] for c in GRIDS["recipe"] if c.trains() in trains}
    mine = list({(cells[r["key"]].key, r["seed"]): r for r in runs if r["key"] in cells}.values())
    if not mine:
        return None
    grid = {c.key: c for c in GRIDS["recipe"]}
    shared = sorted({label(grid[r["key"]].setting) for r in mine} - {label(setting)})
    dropout = [r for r in mine if cells[r["key"]].dropout]
    no_dropout = [r for r in mine if not cells[r["key"]].dropout]
    reached = [r["steps_to_half"] for r in mine if r["steps_to_half"] is not None]
    second = lambda rs: median([r["epoch_means"][1] for r in rs if len(r["epoch_means"]) > 1])  # noqa: E731
    return {"runs": len(mine), "of": sum(len(c.seeds) for c in own),
            "nonfinite": sum(r["nonfinite"] for r in mine), "dead": sum(r["dead"] for r in mine),
            "high_epoch": sum(r["high_epoch"] for r in mine),
            "failed": sum(failed(r) for r in mine), "spikes": sum(r["spike"] and not failed(r) for r in mine),
            "reached_half": len(reached), "steps_to_half": median(reached),
            "second_epoch_loss_dropout": second(dropout), "second_epoch_loss_no_dropout": second(no_dropout),
            "seconds": sum(r["seconds"] for r in mine), "shared_with": shared}


def epoch_to_half(log: list[dict], classes: int) -> int | None:
    """Criterion (b) of a 14-epoch run: its first epoch whose training loss is at most ½·ln C."""
    return next((h["epoch"] for h in log if h["train_loss"] <= math.log(classes) / 2), None)


def meets_figure3(low: float, oriented: float) -> bool:
    """Criterion (c): conv1's low-frequency share and orientedness both at Figure 3's target."""
    return low >= FIGURE3_TARGET[0] and oriented >= FIGURE3_TARGET[1]


def main_run(folder: Path) -> dict | None:
    """Criteria (c) and (d) from a run_all results folder holding 1 CNN (None: not there)."""
    kernels, evaluation = folder / "figures" / "conv1_kernels.json", folder / "eval" / "1cnn.json"
    if not (kernels.exists() and evaluation.exists()):
        return None
    k, e = json.loads(kernels.read_text()), json.loads(evaluation.read_text())
    final = k["all"]["final"]
    log = read_steps(folder / "logs" / "1cnn.jsonl")
    low, oriented = final["low_frequency"], final["orientedness"]
    return {"folder": str(folder), "low_frequency": low, "orientedness": oriented,
            "figure3": meets_figure3(low, oriented),
            "epoch_to_half": epoch_to_half(log, e["classes"]), "final_train_loss": log[-1]["train_loss"],
            "top1_ten": 100 * e["ensemble"]["ten"]["top1"],
            "top1_center": 100 * e["ensemble"]["center"]["top1"],
            "stability": e["checkpoints"][0]["config"].get("stability")}


def replicates(folder: Path) -> dict:
    """The seed replicates' spread in a study folder (baseline-short and the 5 CNNs' members that
    learned by the tables' rule, centre patch, percent), read from its evaluations as they were made: the
    study's runs are of its own time (14 epochs, generator 2), which today's cpu-full tables call stale."""
    from .experiments import BASELINE, SEED_REPLICATES
    from .tables import Results
    res = Results(folder, "cpu-full")
    base, members = res.eval(BASELINE.name), res.eval(SEED_REPLICATES.name)
    errors = (base["ensemble"]["center"], *(m["center"] for m in members["checkpoints"]))
    learned = [100 * err["top1"] for err in errors if res.learned(err)]
    if len(learned) < 2:
        raise SystemExit(f"{folder}: {len(learned)} seed replicate(s) learned; the spread needs two or more")
    return {"folder": str(folder), "n": len(learned), "mean": round(statistics.mean(learned), 2),
            "sd": round(statistics.stdev(learned), 2)}


def seeds(setting: str) -> dict | None:
    """Criterion (c) over seeds: Figure 3's two scores for every run of 1 CNN's configuration kept for a
    setting at cpu-full (1 CNN, seed 0, and the 5 CNNs' members, seeds 1–5: conv1/<run>.npy, written by
    run_all), from its main folder and the study's own (`run_all --experiments 5cnns-seed1,...
    --results results/recipe/cpu-full-SETTING`), with each run's last validation error (1 crop) and
    first epoch with a training loss ≤ ½·ln C (criterion b), from its log. None: no run kept."""
    from .experiments import EXPERIMENTS, MAIN, SEED_REPLICATES
    from .figures import kernel_statistics
    seed_of = {r.name: r.seed for e in EXPERIMENTS.values() for r in e.runs}
    found = {}
    for folder in dict.fromkeys((main_folder(setting), study_folder(setting))):
        for run in (*MAIN.runs, *SEED_REPLICATES.runs):
            kept = folder / "conv1" / f"{run}.npy"
            if run in MAIN.runs and not kept.exists():  # a folder made before every run kept its conv1
                kept = folder / "figures" / "conv1_kernels.npy"
            if run in found or not kept.exists():
                continue
            stats = kernel_statistics(np.load(kept))
            low, oriented = float(stats["low_frequency"].mean()), float(stats["orientedness"].mean())
            log_file = folder / "logs" / f"{run}.jsonl"
            log = read_steps(log_file) if log_file.exists() else []
            found[run] = {"seed": seed_of[run], "low_frequency": low, "orientedness": oriented,
                          "figure3": meets_figure3(low, oriented),
                          "val_top1": 100 * log[-1]["val_top1"] if log else None,
                          "epoch_to_half": epoch_to_half(log, RECIPE_SCALES["cpu-full"]["classes"]),
                          "from": str(kept)}
    if not found:
        return None
    spread = lambda k: (float(np.mean([r[k] for r in found.values()])),  # noqa: E731
                        float(np.std([r[k] for r in found.values()], ddof=1)) if len(found) > 1 else None)
    return {"runs": found, "low_frequency": spread("low_frequency"), "orientedness": spread("orientedness"),
            "met": sum(r["figure3"] for r in found.values())}


# Where each setting's 14-epoch 1 CNN at cpu-full (generator 2, the study's) lives: results/history/
# synthetic-cpu-full-SETTING once superseded (-fc-bias-kick-matched, the study's choice; -paper for §5's),
# else the study's own run_all folder. results/synthetic-cpu-full holds today's 28-epoch runs on generator 4
# (since 2026-12-07), never a study run.
STUDY_CHOICE = "fc-bias-kick-matched"  # cpu-full's setting from the study until generator 4 (2026-12-06)


def main_folder(setting: str) -> Path:
    history = HISTORY / f"synthetic-cpu-full-{setting or 'paper'}"
    return history if (history / "eval" / "1cnn.json").exists() else study_folder(setting)


def study_folder(setting: str) -> Path:
    """The study's own run_all folder of a setting at cpu-full ("" or None: §5's values, -paper)."""
    return OUT / f"cpu-full-{setting or 'paper'}"


def table(out: Path) -> dict:
    runs = json.loads((out / "recipe.json").read_text())["runs"] if (out / "recipe.json").exists() else []
    band = {"setting": STUDY_CHOICE, **replicates(main_folder(STUDY_CHOICE))}
    rows = []
    for setting in RECIPE_SETTINGS:
        row = {"setting": setting, "changes": STABILITY[setting].changes(32) if setting else "none"}
        for name, scale in RECIPE_SCALES.items():
            keys = ("classes", "per_class", "batch", "steps")
            row[name] = first_epochs(runs, {k: scale[k] for k in keys}, setting)
        main = main_run(main_folder(setting))
        if main:
            main["within_band"] = abs(main["top1_center"] - band["mean"]) <= 2 * band["sd"]
        row["cpu-full main"] = main
        row["cpu-full seeds"] = seeds(setting)
        rows.append(row)
    result = {"rows": rows, "band": band, "figure3_target": FIGURE3_TARGET, **provenance()}
    write_text(out / "criteria.json", json.dumps(result, indent=1))
    write_text(out / "criteria.md", markdown(result))
    return result


def _fmt(x, spec=".2f", none="—"):
    return none if x is None else format(x, spec)


def _table(result: dict, key: str, missing: str, cells, columns: list[str]) -> list[str]:
    """A markdown table of one entry of every setting's row: a line per setting (`missing` where it has
    none), `cells` giving the columns after the setting's."""
    lines = ["| setting | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in result["rows"]:
        got = row[key]
        rest = [missing] + [""] * (len(columns) - 1) if got is None else cells(got)
        lines.append(f"| {label(row['setting'])} | " + " | ".join(rest) + " |")
    return lines


def markdown(result: dict) -> str:
    band = result["band"]
    lines = ["# The recipe study: candidates × the four criteria", "",
             f"Made by `python -m reproduce.recipe table` ({result['commit']}, {result['date']}, "
             f"{result['machine']}) from `recipe.json` (the fragile runs) and each setting's 1 CNN. "
             "Definitions: `reproduce/recipe.py`.", ""]
    for name in RECIPE_SCALES:
        lines += [f"## `{name}`: the first two epochs (criteria a and b)", "",
                  "| setting | runs | failed (non-finite / dead / epoch > 2·ln C) | spikes | "
                  "reached ½·ln C | "
                  "steps to ½·ln C (median) | epoch-2 loss, dropout | epoch-2 loss, no dropout |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in result["rows"]:
            a = row[name]
            if a is None:
                lines.append(f"| {label(row['setting'])} | not run | | | | | | |")
                continue
            same = (f" ({', '.join(a['shared_with'])}'s: the same training here)"
                    if a.get("shared_with") else "")
            lines.append(f"| {label(row['setting'])} | {a['runs']} of {a['of']}{same} | **{a['failed']}** "
                         f"({a['nonfinite']} / {a['dead']} / {a['high_epoch']}) | {a['spikes']} | "
                         f"{a['reached_half']} of {a['runs']} | {_fmt(a['steps_to_half'], '.0f')} | "
                         f"{_fmt(a['second_epoch_loss_dropout'])} | "
                         f"{_fmt(a['second_epoch_loss_no_dropout'])} |")
        lines.append("")
    lines += ["## `cpu-full`: 1 CNN after 14 epochs (criteria c and d)", "",
              f"Figure 3's target: low-frequency share ≥ {FIGURE3_TARGET[0]}, orientedness ≥ "
              f"{FIGURE3_TARGET[1]} "
              "(white noise: about 0.10 and 0.11). The replicates' spread: the "
              f"{band['n']} seed replicates of the study's choice (`{band['setting']}`, "
              f"`{band['folder']}`), "
              "centre patch, "
              f"{band['mean']:.1f} ± {band['sd']:.1f}; "
              "within it: at most 2 sd from their mean.", ""]

    def main_cells(m):
        return [_fmt(m["epoch_to_half"], "d"), f"{m['final_train_loss']:.3f}", f"{m['low_frequency']:.2f}",
                f"{m['orientedness']:.2f}", "met" if m["figure3"] else "missed", f"{m['top1_ten']:.1f}",
                f"{m['top1_center']:.1f}", "yes" if m["within_band"] else "no", f"`{m['folder']}`"]

    def seed_cells(s):
        runs = sorted(s["runs"].values(), key=lambda r: r["seed"])
        each = lambda k, spec: ", ".join(_fmt(r[k], spec) for r in runs)  # noqa: E731
        spread = lambda k: "" if s[k][1] is None else f" ({s[k][0]:.2f} ± {s[k][1]:.2f})"  # noqa: E731
        return [", ".join(str(r["seed"]) for r in runs),
                each("low_frequency", ".2f") + spread("low_frequency"),
                each("orientedness", ".2f") + spread("orientedness"), f"{s['met']} of {len(runs)}",
                each("val_top1", ".1f"), each("epoch_to_half", "d")]

    lines += _table(result, "cpu-full main", "not run", main_cells,
                    ["first epoch with train loss ≤ ½·ln C", "last epoch's train loss", "low-frequency share",
                     "orientedness", "Figure 3 target", "top-1, 10 patches", "top-1, centre",
                     "within the spread", "from"])
    lines += ["", "## `cpu-full`: Figure 3 over seeds (criterion c)", "",
              "Every kept 14-epoch run of 1 CNN's configuration: seed 0 is 1 CNN (the run Figure 3 draws), "
              "seeds 1–5 the 5 CNNs' members. Each seed's score, then the mean ± sd; the validation error is "
              "each run's last epoch's (one centre crop, its log).", ""]
    lines += _table(result, "cpu-full seeds", "none kept", seed_cells,
                    ["seeds", "low-frequency share", "orientedness", "target met", "validation top-1",
                     "first epoch with train loss ≤ ½·ln C"])
    said = "; ".join(f"`{label(r['setting'])}`: {r['changes']}" for r in result["rows"])
    lines += ["", f"Settings: {said}",
              ""]
    return "\n".join(lines)


# ---- the epoch after ε ÷ 10 ----

def after_division(run_dir: Path, out: Path) -> dict:
    """The run's first division of ε (its log's schedule note) replayed three ways from the checkpoint
    at that epoch's end: as run (ε ÷ 10, §5's rule), ε kept, and ε ÷ 10 with the velocity scaled by
    0.1 at the switch (`velocity_rescale`). One epoch each; its training loss and validation error, the
    first steps' losses, and how far the velocity carried over from the old ε moves the weights
    (Σ μ^t·v₀ over the epoch) against how far they moved."""
    from alexnet import checkpoint
    from alexnet.config import AlexNetConfig
    from alexnet.diagnostics import StepLog
    from alexnet.engine import Trainer, TrainOptions
    log = read_steps(run_dir / "log.jsonl")
    epoch = next((h["epoch"] for h in log if h.get("schedule_note")), None)
    if epoch is None:
        raise ValueError(f"{run_dir}: its log records no division of ε")
    path = next((p for p in checkpoint.files(run_dir) if checkpoint.epoch_of(p) == epoch
                 and checkpoint.step_of(p) == log[epoch - 1]["step"]), None)
    if path is None:
        raise ValueError(f"{run_dir}: no checkpoint at the end of epoch {epoch}, where ε was divided; "
                         f"train it again with --max-steps {log[epoch - 1]['step']}")
    _, ck = checkpoint.read(path)  # read again for each way below: training changes its tensors in place
    cfg = AlexNetConfig.from_dict(ck["config"])
    opts = json.loads((run_dir / "config.json").read_text()).get("options", {})
    per_epoch = ck["step"] // ck["epoch"]
    results = {}
    for way in ("as run", "ε kept", "velocity rescaled"):
        variant = cfg.replace(velocity_rescale=way == "velocity rescaled")
        _, ck = checkpoint.read(path)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(variant, TrainOptions(cache=opts["cache"], run_dir=tmp, workers=0,
                                                    progress=False, devices=("cpu", "cpu"),
                                                    max_steps=ck["step"] + per_epoch, log_steps=True))
            trainer.load_state(ck)
            if way == "ε kept":
                trainer.schedule.done -= 1
            params = dict(trainer.net.named_parameters())
            before = {k: p.detach().clone() for k, p in params.items()}
            v0 = {k: trainer.opt.state[p]["velocity"].clone() for k, p in params.items()}
            trainer.step_log = StepLog(Path(tmp))
            trainer.run()
            trainer.step_log.close()
            losses = [r["loss"] for r in read_steps(Path(tmp) / StepLog.NAME)]
            h = trainer.history[-1]
            # Σ_{t=1..n} μ^t: how far v₀ alone carries the weights over the epoch's n steps (§5's rule)
            carry = sum(cfg.momentum ** t for t in range(1, per_epoch + 1))
            carry *= h["lr"]["weight"] / cfg.lr if variant.velocity_rescale else 1.0
            moved = math.sqrt(sum(float((p.detach() - before[k]).double().square().sum())
                                  for k, p in params.items()))
            carried = carry * math.sqrt(sum(float(v.double().square().sum()) for v in v0.values()))
            results[way] = {"train_loss": h["train_loss"], "val_top1": h["val_top1"],
                            "lr": h["lr"]["weight"], "first_steps": [round(x, 4) for x in losses[:12]],
                            "moved": moved, "carried": carried}
            print(f"{way}: train loss {h['train_loss']:.3f}, val error {h['val_top1']:.3f}, "
                  f"ε {h['lr']['weight']:g}; "
                  f"‖ΔW‖ {moved:.3f}, carried by v₀ alone {carried:.3f}", file=sys.stderr)
    result = {"run": run_dir.name, "divided_after_epoch": epoch, "epoch_before": log[epoch - 1],
              "ways": results, **provenance()}
    write_text(out / "after_division.json", json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reproduce.recipe", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    m = sub.add_parser("measure", help="‖h‖² against fc6 and fc7's bias → fc8_input.json (about 5 min)")
    m.add_argument("--work", default="cache/stability", help="where the synthetic sets are made")
    sub.add_parser("table", help="criteria.md and .json from the study's runs")
    c = sub.add_parser("carry-over", help="an earlier study's runs, filed under cells that train the same")
    c.add_argument("source", type=Path, help="a reproduce.stability JSON (results/stability/fragile.json)")
    d = sub.add_parser("after-division", help="the epoch after a run's first ε ÷ 10, three ways")
    d.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "measure":
        measure(Path(args.work), args.out)
    elif args.what == "table":
        table(args.out)
        print(f"wrote {args.out}/criteria.md, criteria.json", file=sys.stderr)
    elif args.what == "carry-over":
        filed = carry_over(args.source, args.out)
        print("\n".join(filed) or "nothing to carry over", file=sys.stderr)
    else:
        after_division(args.run_dir, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
