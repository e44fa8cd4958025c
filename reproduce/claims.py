"""Every checkable claim of the paper beyond its tables, measured from what run_all's runs left, with a
computed verdict: <results>/tables/claims.md and claims.json.

    python -m reproduce.claims --results results/synthetic-cpu-full --scale cpu-full

The claims are reproduce/experiments.py's CLAIMS; each has a measure here (MEASURES). A measure reads the
results folder only (logs/, eval/ including the training split's eval/<run>-train.json, conv1/<run>.npy,
figure1.json, figures/neighbours.json) and retrains nothing. Verdicts:

- reproduced: the direction the paper gives, beyond noise;
- not reproduced: the other direction, beyond noise, or absent where the paper says always;
- within noise: a difference within NOISE_RULE standard deviations of the seed replicates (baseline-short
  and the 5 CNNs' members that learned: reproduce/tables.py's band), or of what stands in for them;
- not run at this scale: with the flag that runs it;
- needs ImageNet: only the paper's data can test it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from alexnet.diagnostics import read_steps

from .experiments import (
    BASELINE,
    CLAIMS,
    EVALUATIONS,
    EXPERIMENTS,
    MAIN,
    RUNS,
    SCALES,
    SEED_REPLICATES,
    Override,
    same_run,
)
from .tables import NOISE_RULE, Results, _write, add_run_options, header

REPRODUCED, NOT_REPRODUCED, NOISE = "reproduced", "not reproduced", "within noise"
NOT_RUN, IMAGENET = "not run at this scale", "needs ImageNet"
CONTRADICTED, FAILED = "contradicted", "failed to train"
RELU_SEVERAL = 2.0  # Figure 1's ratio that counts as "several times faster"
COLOUR_GAP = 0.2  # a tower is colour-specific beside the other when their conv1 colour shares differ so much
NEIGHBOURS_K = 5
IMAGENET_TRAIN = 1_281_167  # ILSVRC-2012's training images (§2: "roughly 1.2 million")


@dataclass
class Finding:
    ours: str  # our measurement, in words and numbers
    verdict: str
    runs: tuple[str, ...] = ()  # the runs it comes from
    numbers: dict = field(default_factory=dict)
    interval: list | None = None  # [low, high]: the 95% interval of the difference (None: unbounded)
    detectable: float | None = None  # the smallest effect the interval would tell from none
    seeds: dict = field(default_factory=dict)  # {arm: seeds}
    max_ratio: float | None = None  # Figure 1: the largest ratio its window can measure


def _not_run(res: Results, exp: str) -> Finding:
    """A claim whose runs are not results here: why (the tables' reason), and the flag that runs them."""
    ev = EVALUATIONS.get(exp)
    why = res.verdict(ev).why if ev else ""
    if not EXPERIMENTS[exp].runs:  # Figure 1: run_all runs it at every scale
        why = f"no {exp} results here: run_all makes them (--experiments {exp})"
    elif res.size(EXPERIMENTS[exp].scale) is None:
        why = f"{exp} is not run at the {res.scale} scale: --scale cpu-full (or a GPU: --scale gpu) runs it"
    elif not why:
        why = f"run the {exp} experiment (--experiments {exp})"
    return Finding(why, NOT_RUN, (exp,))


def _top1(res: Results, name: str) -> float | None:
    """An evaluation's top-1 in percent when it is a result here (reproduce/tables.py's rules)."""
    err = res.verdict(EVALUATIONS[name]).errors
    return None if err is None else 100 * err["top1"]


def _beyond(diff: float, noise: float, helps: bool) -> str:
    """The verdict of a difference measured in the direction the paper claims (`helps`: positive means
    the paper's direction)."""
    if abs(diff) <= noise:
        return NOISE
    return REPRODUCED if (diff > 0) == helps else NOT_REPRODUCED


def error_delta(res: Results, exp: str, paper: float) -> Finding:
    """The ablation's top-1 minus the replicates' mean (the feature's reduction), against NOISE_RULE sd."""
    band, ablated = res.band(), _top1(res, exp)
    if ablated is None:
        return _not_run(res, exp)
    if band is None:
        return Finding("no seed replicates to compare with: run baseline-short and 5cnns", NOT_RUN, (exp,))
    red, noise = ablated - band["top1"], NOISE_RULE * band["top1_sd"]
    return Finding(f"{exp} {ablated:.1f} against the replicates' {band['top1']:.1f} ± {band['top1_sd']:.1f}: "
                   f"the feature lowers top-1 by {red:+.1f} (paper {paper:.1f}; noise {noise:.1f})",
                   _beyond(red, noise, True), (exp, *band["runs"]),
                   {"ablated": ablated, "reduction": red, "noise": noise, "paper": paper})


def train_errors(res: Results, name: str) -> dict[str, float]:
    """Top-1 (percent) on the training split, centre patch, net in eval mode, per run of an evaluation
    (eval/<name>-train.json, which run_all makes where the split is small)."""
    path = res.root / "eval" / f"{EVALUATIONS[name].train_name}.json"
    if not path.exists():
        return {}
    ev = json.loads(path.read_text())
    runs = EVALUATIONS[name].runs
    if len(runs) == 1:
        return {runs[0]: 100 * ev["ensemble"]["center"]["top1"]}
    return {Path(c["path"]).parent.name: 100 * c["center"]["top1"] for c in ev["checkpoints"]}


def replicate_train_errors(res: Results) -> dict[str, float]:
    """The training-split top-1 of each replicate in the band (those that learned)."""
    every = {**train_errors(res, BASELINE.name), **train_errors(res, SEED_REPLICATES.name)}
    return {r["run"]: every[r["run"]] for r in res.replicates() if r["run"] in every}


def _val_errors(res: Results) -> dict[str, float]:
    return {r["run"]: r["top1"] for r in res.replicates()}


def gap(res: Results, exp: str, more_without: bool = True) -> Finding:
    """Overfitting: validation top-1 − training-split top-1 (both centre patch, no dropout), the ablation's
    against the replicates' (mean ± sd). The paper: the gap is larger without the feature."""
    ablated = _top1(res, exp)
    if ablated is None:
        return _not_run(res, exp)
    train = train_errors(res, exp)
    reps_train, reps_val = replicate_train_errors(res), _val_errors(res)
    if exp not in train or len(reps_train) < 2:
        return Finding("no training-split evaluation of these runs (run_all makes eval/<run>-train.json "
                       "where the training split has at most 20,000 images)", NOT_RUN, (exp,))
    # the ablation's own centre-patch error, as the replicates' are
    ablated_center = 100 * res.eval(exp)["ensemble"]["center"]["top1"]
    mine = ablated_center - train[exp]
    gaps = [reps_val[r] - reps_train[r] for r in reps_train]
    mean, sd = statistics.mean(gaps), statistics.stdev(gaps)
    diff, noise = mine - mean, NOISE_RULE * sd
    return Finding(f"gap (val − train, top-1) {exp} {mine:.1f} against the replicates' {mean:.1f} ± {sd:.1f} "
                   f"(train {train[exp]:.1f}, val {ablated_center:.1f})",
                   _beyond(diff, noise, more_without), (exp, *reps_train),
                   {"gap": mine, "replicates_gap": mean, "replicates_gap_sd": sd, "noise": noise})


def _log(res: Results, run: str) -> list[dict]:
    return read_steps(res.root / "logs" / f"{run}.jsonl")


def _epochs_to(log: list[dict], error: float) -> int | None:
    """The first epoch whose logged training top-1 (augmented batches, dropout on) is at most `error`."""
    return next((h["epoch"] for h in log if h["train_top1"] <= error), None)


# ---- the measures ----

def _from_interval(low: float | None, high: float | None, no_effect: float) -> str:
    """The paper's sign with the interval clear of `no_effect`: reproduced; the other sign: contradicted;
    else within noise (None: unbounded on that side)."""
    if low is not None and low > no_effect:
        return REPRODUCED
    if high is not None and high < no_effect:
        return CONTRADICTED
    return NOISE


def _figure1(res: Results) -> dict | None:
    """figure1.json when it is there and counts steps (made since 2026-12-07); None otherwise."""
    path = res.root / "figure1.json"
    f = json.loads(path.read_text()) if path.exists() else None
    return f if f and "window" in f else None


def relu(res: Results) -> Finding:
    """Figure 1: tanh's steps to 25% training error over ReLU's (figure1.ratio_test: geometric means over
    seeds, a 95% Welch interval on the log steps), against 1 for the sign and the paper's 6×."""
    from .figure1 import PAPER_RATIO, ratio_test
    f = _figure1(res)
    if f is None:
        return _not_run(res, "fig1")
    r, t = f["relu"], f["tanh"]
    test = ratio_test(r["steps_to_25"], t["steps_to_25"], r["limit"], t["limit"])
    seeds = {"relu": len(r["steps_to_25"]), "tanh": len(t["steps_to_25"])}
    reached = {a: sum(s is not None for s in f[a]["steps_to_25"]) for a in seeds}
    max_ratio = t["limit"] / math.exp(statistics.fmean(math.log(s or r["limit"]) for s in r["steps_to_25"]))
    steps = lambda a: ", ".join(f"{s:,}" if s else f">{f[a]['limit']:,}" for s in f[a]["steps_to_25"])  # noqa: E731
    ours = (f"steps to 25% training error, ReLU {steps('relu')} (lr {r['lr']}), tanh {steps('tanh')} "
            f"(lr {t['lr']}); batch {f['batch']}, {f['net']}, {f['data']}")
    numbers = {**test, "reached": reached, "paper": PAPER_RATIO}
    common = dict(runs=("fig1",), numbers=numbers, seeds=seeds, max_ratio=max_ratio)
    if test["failed"]:
        return Finding(ours + f": neither net reached 25% in {r['limit']:,} steps", FAILED, **common)
    low, high = test["interval"]
    shown = "–".join(f"{v:.1f}×" if v is not None else "∞" if i else "0" for i, v in enumerate((low, high)))
    bound = {"lower": "at least ", "upper": "at most "}.get(test["bound"], "")
    shown += f"; detectable {test['detectable']:.1f}×" if test["detectable"] else ""
    ours += (f": tanh/ReLU {bound}{test['ratio']:.1f}× (95% interval {shown}; the window measures up to "
             f"{max_ratio:.1f}×; paper {PAPER_RATIO}×)")
    return Finding(ours, _from_interval(low, high, 1.0), interval=[low, high], detectable=test["detectable"],
                   **common)


def two_towers_time(res: Results) -> Finding:
    """Seconds per training epoch (logs), one-tower against the replicates (mean ± sd)."""
    if _top1(res, "one-tower") is None:
        return _not_run(res, "one-tower")
    devices = {tuple(h["devices"]) for r in ("one-tower", BASELINE.name) for h in _log(res, r)}
    if not all(len(set(d)) == 2 and all(x.startswith("cuda") for x in d) for d in devices if len(d) == 2):
        return Finding("the claim is about two GPUs working at once; here the towers ran on "
                       f"{', '.join(sorted({'/'.join(d) for d in devices}))}: run on two GPUs "
                       "(--devices cuda:0,cuda:1)", NOT_RUN, ("one-tower",))
    per = lambda run: statistics.median(h["seconds"] for h in _log(res, run))  # noqa: E731
    reps = [per(r["run"]) for r in res.replicates() if _log(res, r["run"])]
    one = per("one-tower")
    if len(reps) < 2:
        return Finding("no replicates' logs to compare with", NOT_RUN, ("one-tower",))
    mean, sd = statistics.mean(reps), statistics.stdev(reps)
    ours = f"median seconds per epoch: one tower {one:.1f}, two towers {mean:.1f} ± {sd:.1f} (two GPUs)"
    return Finding(ours, _beyond(one - mean, NOISE_RULE * sd, True), ("one-tower",),
                   {"one_tower_s": one, "two_towers_s": mean, "two_towers_sd": sd})


def lrn_cifar(res: Results) -> Finding:
    """figure1.json's norm_pair: Figure 1's ReLU net with and without §3.3's normalization across maps,
    the same seeds (paired); the test error without minus with, its 95% paired t interval against 0.
    Failed to train: an arm's mean test error not below half of chance."""
    from .figure1 import PAPER_NORM, paired_test
    f = _figure1(res)
    pair = f.get("norm_pair") if f else None
    if pair is None:
        return _not_run(res, "fig1")
    with_, without = ([100 * e for e in pair[k]] for k in ("with", "without"))
    test = paired_test(with_, without)
    half_chance = 50 * pair["chance"]
    mean = {k: statistics.fmean(v) for k, v in (("with", with_), ("without", without))}
    norm = {"across-maps": "§3.3's normalization across maps", "same-map": "the 2012 code's same-map "
            "normalization"}.get(pair["norm"], pair["norm"])
    ours = (f"Figure 1's ReLU net with and without {norm}, seeds {', '.join(map(str, pair['seeds']))} each "
            f"(paired), {pair['steps']:,} steps, on {pair['test']}: {mean['without']:.1f} without, "
            f"{mean['with']:.1f} with")
    common = dict(runs=("fig1",), numbers={**test, "with": with_, "without": without, "paper": PAPER_NORM},
                  seeds={"with": len(with_), "without": len(without)}, detectable=test["detectable"])
    if max(mean.values()) >= half_chance:
        return Finding(ours + f" (not below half of chance, {half_chance:.0f}%: the nets did not learn)",
                       FAILED, interval=test["interval"], **common)
    low, high = test["interval"]
    shown = ("one seed: no interval" if low is None else
             f"95% interval {low:+.1f} to {high:+.1f}; detectable {test['detectable']:.1f}")
    ours += f": without − with {test['difference']:+.1f} points ({shown}; paper {PAPER_NORM:+.1f})"
    return Finding(ours, _from_interval(low, high, 0.0), interval=[low, high], **common)


def dropout_slower(res: Results) -> Finding:
    """Epochs until the logged training error first reaches half of chance: the replicates' (dropout)
    against no-dropout's. The paper: about twice as many with dropout."""
    if _top1(res, "no-dropout") is None:
        return _not_run(res, "no-dropout")
    target = 100 * res.chance()[0] / 2
    reps = {r["run"]: _epochs_to(_log(res, r["run"]), target / 100) for r in res.replicates()}
    reached = [e for e in reps.values() if e is not None]
    mine = _epochs_to(_log(res, "no-dropout"), target / 100)
    if mine is None or len(reached) < 2:
        return Finding(f"the training error did not reach {target:.0f}% in enough runs", NOT_RUN,
                       ("no-dropout",))
    mean, sd = statistics.mean(reached), statistics.stdev(reached)
    noise = max(NOISE_RULE * sd, 1.0)  # epoch-granular: one epoch at least
    return Finding(f"epochs to {target:.0f}% training error (logged): with dropout {mean:.1f} ± {sd:.1f} "
                   f"({len(reached)} of {len(reps)} replicates), without {mine}: {mean / mine:.1f}×",
                   _beyond(mean - mine, noise, True), ("no-dropout", *reps),
                   {"with": mean, "with_sd": sd, "without": mine, "ratio": mean / mine})


def wd_train(res: Results) -> Finding:
    """Training-split top-1 without weight decay against the replicates'. The paper: higher without."""
    if _top1(res, "no-wd") is None:
        return _not_run(res, "no-wd")
    mine, reps = train_errors(res, "no-wd").get("no-wd"), replicate_train_errors(res)
    if mine is None or len(reps) < 2:
        return Finding("no training-split evaluation of these runs", NOT_RUN, ("no-wd",))
    mean, sd = statistics.mean(reps.values()), statistics.stdev(reps.values())
    return Finding(f"training-split top-1 without weight decay {mine:.1f}, with {mean:.1f} ± {sd:.1f}",
                   _beyond(mine - mean, NOISE_RULE * sd, True), ("no-wd", *reps),
                   {"without": mine, "with": mean, "with_sd": sd})


def ensemble(res: Results) -> Finding:
    """The 5 CNNs' averaged top-1 against its members' mean: beyond NOISE_RULE standard errors of it."""
    ens = _top1(res, SEED_REPLICATES.name)
    if ens is None:
        return _not_run(res, SEED_REPLICATES.name)
    members = [r["top1"] for r in res.replicates() if r["run"] in SEED_REPLICATES.runs]
    if len(members) < 2:
        return Finding("fewer than two members learned", NOT_RUN, (SEED_REPLICATES.name,))
    mean, sd = statistics.mean(members), statistics.stdev(members)
    noise = NOISE_RULE * sd / math.sqrt(len(members))
    return Finding(f"5 CNNs {ens:.1f} (centre patch) against its {len(members)} members' "
                   f"{mean:.1f} ± {sd:.1f} (best {min(members):.1f})",
                   _beyond(mean - ens, noise, True), SEED_REPLICATES.runs,
                   {"ensemble": ens, "members": mean, "members_sd": sd, "noise": noise})


def towers_colour(res: Results) -> Finding:
    """Per run with two towers: the mean colour share of each tower's conv1 kernels (reproduce/figures.py)
    and their gap. The paper: one tower colour-agnostic, the other colour-specific, in every run."""
    from .figures import kernel_statistics
    gaps = {}
    files = {p.stem: p for p in sorted((res.root / "conv1").glob("*.npy"))}
    figure3 = res.root / "figures" / "conv1_kernels.npy"  # 1 CNN's, from folders made before conv1/ was
    if MAIN.runs[0] not in files and figure3.exists() and _top1(res, MAIN.name) is not None:
        files[MAIN.runs[0]] = figure3
    one_runs = set()
    for run, path in sorted(files.items(), key=lambda f: f[0] not in MAIN.runs):
        if run not in RUNS or RUNS[run][1].overrides.get("towers", 2) != 2:
            continue
        exp, spec = RUNS[run]
        one = same_run(res.size(exp.scale), spec)
        if one in one_runs:  # baseline-short as 1 CNN's run: counted once
            continue
        one_runs.add(one)
        share = kernel_statistics(np.load(path))["colour_share"]
        half = len(share) // 2
        gaps[run] = (float(share[:half].mean()), float(share[half:].mean()))
    if not gaps:
        return Finding("no run's conv1 kernels here (run_all keeps conv1/<run>.npy for each finished run)",
                       NOT_RUN, ())
    split = {r: abs(a - b) >= COLOUR_GAP for r, (a, b) in gaps.items()}
    shown = ", ".join(f"{r} {a - b:+.2f}" for r, (a, b) in gaps.items())
    verdict = REPRODUCED if all(split.values()) else NOT_REPRODUCED
    return Finding(f"{sum(split.values())} of {len(gaps)} runs have a tower gap of at least {COLOUR_GAP} in "
                   f"colour share (tower 0 − tower 1: {shown})", verdict, tuple(gaps),
                   {"gaps": {r: a - b for r, (a, b) in gaps.items()}})


def neighbours(res: Results) -> Finding:
    path = res.root / "figures" / "neighbours.json"
    if not path.exists():
        return Finding("no neighbours.json: run_all's figures stage writes it from 1 CNN's features", NOT_RUN,
                       ("1cnn",))
    n = json.loads(path.read_text())
    ours = (f"{n['k']}-NN label agreement over {n['queries']} validation images: last hidden layer "
            f"{n['feature_agreement']:.2f}, pixels {n['pixel_agreement']:.2f} (chance {n['chance']:.2f}); "
            f"the feature neighbours' median pixel-distance percentile {n['pixel_percentile']:.0f}")
    near_in_pixels = n["pixel_percentile"] < 10
    verdict = (REPRODUCED if n["feature_agreement"] - n["pixel_agreement"] >= 0.2 and not near_in_pixels
               else NOT_REPRODUCED)
    return Finding(ours, verdict, ("1cnn",), n)


def time(res: Results) -> Finding:
    from alexnet.placement import resolve_devices

    from .compute import benchmark_rate
    device = resolve_devices(None)[0]
    rate = benchmark_rate(device, Path(__file__).resolve().parents[1])
    if rate is None:
        return Finding(f"no committed benchmark for {device} (python -m tools.bench)", IMAGENET, ())
    days = 90 * IMAGENET_TRAIN / rate[0] / 86400
    return Finding(f"a projection, not a measurement: 90 epochs of ILSVRC-2012 at {rate[0]:.0f} images/s "
                   f"({rate[1]}) would take {days:.1f} days here", IMAGENET, (), {"days": days})


MEASURES = {
    "relu": relu,
    "two-towers": lambda res: error_delta(res, "one-tower", 1.7),
    "two-towers-time": two_towers_time,
    "lrn": lambda res: error_delta(res, "no-lrn", 1.4),
    "lrn-cifar": lrn_cifar,
    "pool": lambda res: error_delta(res, "pool-z2", 0.4),
    "pool-overfit": lambda res: gap(res, "pool-z2"),
    "crop-overfit": lambda res: gap(res, "no-crop"),
    "pca": lambda res: error_delta(res, "no-pca", 1.0),
    "dropout-overfit": lambda res: gap(res, "no-dropout"),
    "dropout-slower": dropout_slower,
    "wd-train": wd_train,
    "ensemble": ensemble,
    "towers-colour": towers_colour,
    "neighbours": neighbours,
    "depth": lambda res: error_delta(res, "no-conv4", 2.0),
    "time": time,
}

NOTES = f"""
Every verdict is computed (reproduce/claims.py). Definitions:
- replicates: baseline-short and the 5 CNNs' members that finished and learned (the ablation table's
  band); "within noise": within {NOISE_RULE} of their standard deviations ({NOISE_RULE} standard errors of
  their mean for the ensemble);
- reduction: an ablation's top-1 (its best view) minus the replicates' mean top-1 (centre patch);
- gap: validation top-1 minus top-1 on the training split, both centre patch with the net in eval mode
  (eval/<run>-train.json): overfitting without the augmentation and dropout that the training log's error has;
- epochs to an error: the first epoch whose logged training top-1 (augmented batches, dropout on) is at
  most half of chance;
- colour share: a kernel's power off its grey mean over its total power (reproduce/figures.py); a run's
  towers differ when their means differ by at least {COLOUR_GAP} (a choice: white noise 0.67, grey 0);
- neighbours: for each validation image, its {NEIGHBOURS_K} nearest training images by Euclidean distance
  in the 4096-d last hidden layer, and in pixels (the centre 224 patch); agreement: the share of them with
  the query's class; a neighbour is near in pixels when its pixel distance is in the nearest 10% of the
  training set. Reproduced: feature agreement at least 0.2 above pixel agreement, and the feature
  neighbours' median pixel-distance percentile 10 or more.
"""


def claims(res: Results) -> list[dict]:
    rows = []
    for c in CLAIMS:
        f = MEASURES[c.name](res)
        rows.append({**asdict(c), **asdict(f)})
    return rows


def write_claims(results: str | Path, dataset: str, scale: str, override: Override = Override()) -> Path:
    res = Results(results, scale, override)
    rows = claims(res)
    md = header(f"The paper's claims beyond its tables (ours: {dataset}, {scale} scale)", dataset, res)
    md += "| § | claim | paper | ours | verdict |\n|---|---|---|---|---|\n"
    md += "".join(f"| {r['section']} | {r['claim']} | {r['paper']} | {r['ours']} | **{r['verdict']}** |\n"
                  for r in rows)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in (REPRODUCED, NOT_REPRODUCED, NOISE, NOT_RUN,
                                                                 IMAGENET)}
    md += "\n" + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".\n" + NOTES
    _write(res.root / "tables", "claims", md, rows)
    return res.root / "tables" / "claims.md"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reproduce.claims", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True)
    ap.add_argument("--dataset", default="embedded synthetic dataset (ILSVRC-2012 format, not ImageNet)")
    ap.add_argument("--scale", choices=list(SCALES), required=True)
    add_run_options(ap)
    args = ap.parse_args(argv)
    override = Override(args.epochs, args.batch_size, args.stability)
    print(f"claims → {write_claims(args.results, args.dataset, args.scale, override)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
