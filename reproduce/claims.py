"""Every checkable claim of the paper beyond its tables, measured from what run_all's runs left, with a
computed verdict: <results>/tables/claims.md and claims.json.

    python -m reproduce.claims --results results/synthetic-cpu-full --scale cpu-full

The claims are reproduce/experiments.py's CLAIMS; each has a measure here (MEASURES). A measure reads the
results folder only (logs/, eval/ including the training split's eval/<run>-train.json and 1 CNN's
eval/1cnn-dropout.json, conv1/<run>.npy, figure1.json, figures/neighbours.json) and retrains nothing.
Verdicts (reproduce/PAPER.md, "Claims: statistics"):

- a comparison (an ablation against the baseline's seed replicates, paired by seed where both have two
  or more; images against images; members against their ensemble) gives the 95 % interval of its
  difference in the paper's direction (reproduce/stats.py): reproduced when it lies above zero,
  contradicted when below, within noise when it holds zero; beside it, the smallest difference the
  design detects, to set against the paper's;
- a claim of presence (the towers' colour split in every run, Figure 4's neighbours, Figure 3's kernels)
  is judged against a null made from the same data: reproduced when present beyond it at α = 0.05,
  not reproduced otherwise;
- failed to train: the ablation's runs stopped on a non-finite loss or finished without learning;
- not in its overfitting regime: an overfitting claim whose nets fit their training split no better
  than OVERFIT_TRAIN (the gap then measures something else);
- not run at this scale: with the flag that runs it; needs ImageNet: only the paper's data can test it.
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
from scipy import stats as scipy_stats

from alexnet.diagnostics import read_steps

from .experiments import (
    BASELINE,
    CLAIMS,
    EVALUATIONS,
    EXPERIMENTS,
    MAIN,
    PAIRED,
    PAIRED_SEEDS,
    RUNS,
    SCALES,
    SEED_REPLICATES,
    STABILITY,
    Override,
    same_run,
    seed_run,
)
from .stats import (
    ALPHA,
    CONTRADICTED,
    NEEDS_SEEDS,
    NOISE,
    REPRODUCED,
    Comparison,
    compare,
    from_interval,
    one_sample,
    pairs_needed,
    runs_needed,
    sd_range,
)
from .tables import Results, _write, add_run_options, header

NOT_REPRODUCED = "not reproduced"  # a claim of presence that the null does not reject (and Figure 1's rows)
NOT_RUN, IMAGENET, FAILED = "not run at this scale", "needs ImageNet", "failed to train"
NOT_OVERFITTING = "not in its overfitting regime"
VERDICTS = (REPRODUCED, CONTRADICTED, NOT_REPRODUCED, NOISE, NEEDS_SEEDS, NOT_OVERFITTING, FAILED, NOT_RUN,
            IMAGENET)
OVERFIT_TRAIN = 5.0  # percent: a net overfits only where its training-split top-1 is below this
CONVERGED = 3.0  # points: converged from the epoch whose validation top-1 stays within this of the last
EARLY = 0.2  # the early stages of learning: this share of a run's epochs (6 of cpu-full's 28)
EQUIVALENT = 2.0  # points: ×0.5 approximates the geometric mean where their top-1 differ by less
NULL_SPLITS = 9999  # random 48/48 splits of a run's conv1 kernels: the null of the towers' colour gap
NULL_KERNELS = 9600  # kernels drawn as §5 initializes them: the null of Figure 3's statistics
NEIGHBOURS_K = 5
IMAGENET_TRAIN = 1_281_167  # ILSVRC-2012's training images (§2: "roughly 1.2 million")


@dataclass
class Finding:
    ours: str  # our measurement, in words and numbers
    verdict: str
    runs: tuple[str, ...] = ()  # the runs it comes from
    numbers: dict = field(default_factory=dict)
    interval: list[float] | None = None  # 95 % interval of the difference, the paper's direction positive
    detectable: float | None = None  # the smallest difference the design finds (80 % power, α 0.05)
    seeds: dict = field(default_factory=dict)  # runs per arm
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


# ---- each run's numbers ----

def _seed(run: str) -> int:
    return RUNS[run][1].seed


def ablation_runs(exp: str) -> list[str]:
    """An ablation's runs: seed 0, and the paired-seeds set's seeds where it has them."""
    return [seed_run(exp, s).name for s in (0, *PAIRED_SEEDS)] if exp in PAIRED else [exp]


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


def _train(res: Results, run: str) -> float | None:
    """A run's training-split top-1 (percent)."""
    name = SEED_REPLICATES.name if run in SEED_REPLICATES.runs else run
    return train_errors(res, name).get(run) if name in EVALUATIONS else None


def validation_top1(res: Results, run: str) -> float | None:
    """A run's validation top-1 (percent, centre patch): a replicate's as the band has it."""
    reps = {r["run"]: r["top1"] for r in res.replicates()}
    if run in reps:
        return reps[run]
    ev = res.eval(run) if run in EVALUATIONS else None
    return None if ev is None else 100 * ev["ensemble"]["center"]["top1"]


def _log(res: Results, run: str) -> list[dict]:
    return read_steps(res.root / "logs" / f"{run}.jsonl")


def converged(log: list[dict]) -> int | None:
    """The first epoch from which the logged validation top-1 (net in eval mode, no dropout) stays within
    CONVERGED points of its last epoch's."""
    if not log:
        return None
    last = log[-1]["val_top1"]
    late = [h["epoch"] for h in log if h["val_top1"] > last + CONVERGED / 100]
    return max(late, default=0) + 1


def early_error(log: list[dict]) -> float | None:
    """The mean logged training top-1 (percent) over the first EARLY of a run's epochs (at least one)."""
    if not log:
        return None
    first = log[:max(1, round(EARLY * len(log)))]
    return 100 * statistics.mean(h["train_top1"] for h in first)


# ---- comparisons ----

def _interval_of(c: Comparison) -> list[float]:
    """A comparison's interval as claims.json keeps it (2 decimals)."""
    return [round(c.interval[0], 2), round(c.interval[1], 2)]


@dataclass
class Compared:
    """An ablation's arm against the baseline's, compared (reproduce/stats.py)."""
    exp: str
    c: Comparison
    unpaired: Comparison | None  # where c is paired, its runs unpaired (Welch): what pairing gains
    ablation: dict  # {seed: number}
    baseline: dict
    left_out: list[str]  # runs of the ablation that failed to train, and why

    def used(self, arm: str) -> list[int]:
        """The seeds of an arm that the comparison used: the paired seeds alone where it is paired,
        else every run of the arm."""
        return list(self.c.pairs) or sorted(getattr(self, arm))

    def runs(self, res: Results, arm: str) -> list[str]:
        """The runs of an arm that the comparison used (`used`)."""
        runs, used = (ablation_runs(self.exp) if arm == "ablation" else [r["run"] for r in res.replicates()],
                      self.used(arm))
        return [r for r in runs if _seed(r) in used]

    def mean(self, arm: str) -> float:
        """An arm's mean over the seeds the comparison used (paired: the means differ by its difference)."""
        return statistics.mean(getattr(self, arm)[s] for s in self.used(arm))

    def said(self, unit: str = "") -> str:
        out = self.c.shown(unit)
        if self.unpaired:
            lo, hi = self.unpaired.interval
            out += f"; unpaired [{lo:+.1f}, {hi:+.1f}]"
        if self.left_out:
            out += f"; left out, failed to train: {'; '.join(self.left_out)}"
        if unpaired := sorted(set(self.ablation) - set(self.used("ablation"))):
            out += (f"; left out of the pairing: {self.exp}'s seed(s) {', '.join(map(str, unpaired))}, whose "
                    "baseline replicate of the same seed did not learn")
        if self.c.seeds["ablation"] == 1:  # the hint only where the paired seeds were not run
            out += "; one seed: a relapse of that run would read as an effect" + (
                " (--experiments paired-seeds adds two)" if self.exp in PAIRED and not self.left_out else "")
        return out

    def finding(self, ours: str, verdict: str | None = None, runs: tuple = (), numbers: dict | None = None):
        return Finding(ours, verdict or self.c.verdict, runs or (self.exp,),
                       {"difference": self.c.diff, "how": self.c.how,
                        "unpaired_interval": self.unpaired and list(self.unpaired.interval),
                        "ablation": self.ablation, "baseline": self.baseline, **(numbers or {})},
                       _interval_of(self.c), round(self.c.detectable, 2),
                       {self.exp: self.c.seeds["ablation"], "baseline": self.c.seeds["baseline"]})


def comparison(res: Results, exp: str, value, what: str, helps: bool = True) -> Compared | Finding:
    """The ablation `exp`'s runs against the baseline's seed replicates (those that learned), each run's
    number `value(run)` (None: not measured), paired by seed; or the Finding that says why there is
    none. Runs of the ablation that failed to train are left out and named; all of them: failed to train."""
    ablation, failed = {}, {}
    for run in ablation_runs(exp):
        ev = EVALUATIONS[run]
        if res.verdict(ev).errors is not None:
            if (v := value(run)) is not None:
                ablation[_seed(run)] = v
        elif why := res.failed(ev):
            failed[run] = why
    if not ablation and failed:
        return Finding("; ".join(f"{run}: {why}" for run, why in failed.items()), FAILED, (exp,),
                       seeds={exp: 0})
    if not ablation:
        ran = any(res.verdict(EVALUATIONS[r]).errors is not None for r in ablation_runs(exp))
        return (Finding(f"no {what} for {exp}", NOT_RUN, (exp,)) if ran else _not_run(res, exp))
    baseline = {_seed(r["run"]): v for r in res.replicates() if (v := value(r["run"])) is not None}
    if not baseline or len(ablation) + len(baseline) < 3:
        return Finding(f"too few seed replicates with {what} to compare with: run baseline-short and 5cnns",
                       NOT_RUN, (exp,))
    c = compare(ablation, baseline, helps)
    # what pairing gains: the same runs, compared unpaired (Welch)
    unpaired = (compare({s: ablation[s] for s in c.pairs}, {s: baseline[s] for s in c.pairs}, helps,
                        paired=False) if c.pairs else None)
    left_out = [f"{run}: {why}" + (f" (the baseline's seed {_seed(run)} learned)" if _seed(run) in baseline
                                   else "") for run, why in failed.items()]
    return Compared(exp, c, unpaired, ablation, baseline, left_out)


def error_comparison(res: Results, exp: str) -> Compared | Finding:
    """The ablation's validation top-1 against the baseline's, paired by seed: the claims' error rows and
    the ablation table (reproduce/tables.py) both read this one comparison."""
    return comparison(res, exp, lambda run: validation_top1(res, run), "validation error")


def error_delta(res: Results, exp: str, paper: float) -> Finding:
    """The ablation's validation top-1 minus the baseline's (the feature's reduction), paired by seed."""
    got = error_comparison(res, exp)
    if isinstance(got, Finding):
        return got
    sd = res.band()["top1_sd"] if res.band() else None
    unpaired = sd and runs_needed(sd, paper)
    needs = [f"{unpaired} runs per arm unpaired (at single runs' sd, {sd:.1f})"] if unpaired else []
    # a paired design needs pairs at the sd of its differences, itself estimated from 2 or 3 pairs: the
    # count at each end of that sd's 95 % range says how little the estimate pins it down
    n, sd_pair = len(got.c.pairs), got.c.se * math.sqrt(len(got.c.pairs))
    pairs = [pairs_needed(v, paper) for v in (sd_pair, *sd_range(sd_pair, n - 1))] if sd_pair > 0 else None
    if pairs:
        needs.append(f"{pairs[0]} seed pairs at the sd of these {n} pairs' differences ({sd_pair:.1f}; "
                     f"at the ends of its 95 % range, {pairs[1]} to {pairs[2]:,})")
    need = f"; {', or '.join(needs)} would detect the paper's {paper:.1f}" if needs else ""
    return got.finding(f"{exp} {got.mean('ablation'):.1f} against the baseline's {got.mean('baseline'):.1f} "
                       f"(top-1, centre patch): the feature lowers it by {got.said()} (paper {paper:.1f}"
                       f"{need})", numbers={"reduction": got.c.diff, "paper": paper,
                                            "runs_needed": unpaired, "pairs_needed": pairs and pairs[0],
                                            "pairs_needed_range": pairs and pairs[1:]})


def gap(res: Results, exp: str, more_without: bool = True) -> Finding:
    """Overfitting: validation top-1 − training-split top-1 (both centre patch, no dropout), the
    ablation's against the baseline's, paired by seed. The paper: the gap is larger without the feature.
    Only nets that fit their training split (below OVERFIT_TRAIN) are in a regime where the gap is
    overfitting."""
    def gap_of(run):
        v, t = validation_top1(res, run), _train(res, run)
        return None if v is None or t is None else v - t
    got = comparison(res, exp, gap_of, "training-split evaluation (run_all makes eval/<run>-train.json "
                     "where the training split has at most 20,000 images)", more_without)
    if isinstance(got, Finding):
        return got
    train = {arm: statistics.mean(_train(res, run) for run in got.runs(res, arm))
             for arm in ("ablation", "baseline")}
    fits = max(train.values()) < OVERFIT_TRAIN
    ours = (f"gap (val − train, top-1) {exp} {got.mean('ablation'):.1f} against the baseline's "
            f"{got.mean('baseline'):.1f}: {got.said()}; training-split top-1 {exp} {train['ablation']:.1f}, "
            f"baseline {train['baseline']:.1f}")
    if not fits:
        ours += f": above {OVERFIT_TRAIN:g}%, the nets underfit, and the gap is not overfitting"
    return got.finding(ours, None if fits else NOT_OVERFITTING,
                       numbers={"gap": got.mean("ablation"), "baseline_gap": got.mean("baseline"),
                                "train": train["ablation"], "baseline_train": train["baseline"]})


def dropout_slower(res: Results) -> Finding:
    """Epochs to converge (`converged`: the validation top-1, net in eval mode, stays within CONVERGED
    points of its last), with dropout (the baseline) against without, paired by seed. The paper: about
    twice as many with dropout."""
    got = comparison(res, "no-dropout", lambda run: converged(_log(res, run)), "training log", helps=False)
    if isinstance(got, Finding):
        return got
    with_, without = got.mean("baseline"), got.mean("ablation")
    return got.finding(f"epochs until the validation top-1 stays within {CONVERGED:g} points of its last: "
                       f"with dropout {with_:.1f}, without {without:.1f} ({with_ / without:.1f}×); "
                       f"with − without {got.said(' epochs')}",
                       runs=(*got.runs(res, "ablation"), *got.runs(res, "baseline")),
                       numbers={"with": with_, "without": without, "ratio": with_ / without})


def wd_train(res: Results) -> Finding:
    """Training-split top-1 without weight decay against with, paired by seed. The paper: higher without."""
    got = comparison(res, "no-wd", lambda run: _train(res, run), "training-split evaluation")
    if isinstance(got, Finding):
        return got
    return got.finding(f"training-split top-1 without weight decay {got.mean('ablation'):.1f}, with "
                       f"{got.mean('baseline'):.1f}: {got.said()}",
                       numbers={"without": got.mean("ablation"), "with": got.mean("baseline")})


def bias_early(res: Results) -> Finding:
    """The mean logged training top-1 over the first EARLY of the epochs, biases 0 (bias0) against §5's
    1, paired by seed. The paper: lower with biases of 1."""
    got = comparison(res, "bias0", lambda run: early_error(_log(res, run)), "training log")
    if isinstance(got, Finding):
        return got
    n = max(1, round(EARLY * len(_log(res, BASELINE.name) or _log(res, "bias0"))))
    fc = res.size("short").stability and STABILITY[res.size("short").stability].fc_bias is not None
    return got.finding(f"mean training top-1 (logged) over the first {n} epoch(s): biases 0 "
                       f"{got.mean('ablation'):.1f}, §5's 1 {got.mean('baseline'):.1f}: {got.said()}"
                       + (" (this scale's recipe sets fc6 and fc7's biases in the baseline: the 1s "
                          "compared are conv2, conv4 and conv5's)" if fc else ""))


def ensemble(res: Results) -> Finding:
    """The 5 CNNs' averaged top-1 against each member's: the members' mean excess, a one-sample t interval
    over the members."""
    ens = res.verdict(SEED_REPLICATES).errors
    if ens is None:
        return (Finding(why, FAILED, (SEED_REPLICATES.name,)) if (why := res.failed(SEED_REPLICATES))
                else _not_run(res, SEED_REPLICATES.name))
    ens = 100 * res.eval(SEED_REPLICATES.name)["ensemble"]["center"]["top1"]
    members = [r["top1"] for r in res.replicates() if r["run"] in SEED_REPLICATES.runs]
    if len(members) < 2:
        return Finding("fewer than two members learned", NOT_RUN, (SEED_REPLICATES.name,))
    c = one_sample([m - ens for m in members])
    failed = ", ".join(res.members_at_chance())
    failed = f"; failed to train, in the average, not among the members: {failed}" if failed else ""
    return Finding(f"5 CNNs {ens:.1f} (centre patch) against its {len(members)} members' "
                   f"{statistics.mean(members):.1f} (best {min(members):.1f}): lower by {c.shown()}{failed}",
                   c.verdict, SEED_REPLICATES.runs, {"ensemble": ens, "members": members},
                   _interval_of(c), round(c.detectable, 2), {"5cnns members": len(members)})


def two_towers_time(res: Results) -> Finding:
    """Seconds per training epoch (the logs' median), one-tower against the baseline, paired by seed."""
    if res.verdict(EVALUATIONS["one-tower"]).errors is None:
        return _not_run(res, "one-tower")
    devices = {tuple(h["devices"]) for r in ("one-tower", BASELINE.name) for h in _log(res, r)}
    if not all(len(set(d)) == 2 and all(x.startswith("cuda") for x in d) for d in devices if len(d) == 2):
        return Finding("the claim is about two GPUs working at once; here the towers ran on "
                       f"{', '.join(sorted({'/'.join(d) for d in devices}))}: run on two GPUs "
                       "(--devices cuda:0,cuda:1)", NOT_RUN, ("one-tower",))
    per = lambda run: statistics.median(h["seconds"] for h in log) if (log := _log(res, run)) else None  # noqa: E731
    got = comparison(res, "one-tower", per, "training log")
    if isinstance(got, Finding):
        return got
    return got.finding(f"median seconds per epoch: one tower {got.mean('ablation'):.1f}, two towers "
                       f"{got.mean('baseline'):.1f} (two GPUs): {got.said(' s')}")


# ---- evaluation-only comparisons of 1 CNN ----

def _main_run(res: Results) -> Finding | None:
    """Why 1 CNN's run is no result here (None: it is one)."""
    if res.verdict(MAIN).errors is not None:
        return None
    why = res.failed(MAIN)
    return Finding(why, FAILED, (MAIN.name,)) if why else _not_run(res, MAIN.name)


def _bits(wrong: str) -> np.ndarray:
    return np.frombuffer(wrong.encode(), np.uint8) - ord("0")


def _images(c: Comparison, what: str) -> str:
    lo, hi = c.interval
    return f"{what} {c.diff:+.1f} points [{lo:+.1f}, {hi:+.1f}] (paired over {c.seeds['n']} images)"


def ten_patches(res: Results) -> Finding:
    """1 CNN's top-1 on the centre patch against the average of ten patches' softmax (§4.1), image by
    image (eval/1cnn.json's per-image errors)."""
    if no := _main_run(res):
        return no
    views = res.eval(MAIN.name)["ensemble"]
    if "ten" not in views or "wrong" not in views["center"]:
        return Finding("eval/1cnn.json has no per-image errors of both views (made before they were "
                       "recorded): run_all's evaluate stage makes it again", NOT_RUN, (MAIN.name,))
    c = one_sample(100 * (_bits(views["center"]["wrong"]) - _bits(views["ten"]["wrong"]).astype(float)))
    return Finding(f"top-1 centre patch {100 * views['center']['top1']:.1f}, ten patches "
                   f"{100 * views['ten']['top1']:.1f}: {_images(c, 'ten patches lower it by')}, detectable "
                   f"{c.detectable:.1f}", c.verdict, (MAIN.name,), {"difference": c.diff},
                   _interval_of(c), round(c.detectable, 2), {"images": c.seeds["n"], MAIN.name: 1})


def dropout_mean(res: Results) -> Finding:
    """§4.2's ×0.5 against the geometric mean of dropout networks (eval/1cnn-dropout.json), image by
    image: reproduced when the interval of their top-1 difference lies within ±EQUIVALENT points,
    contradicted when it lies wholly outside, within noise otherwise."""
    if no := _main_run(res):
        return no
    path = res.root / "eval" / f"{MAIN.dropout_name}.json"
    if not path.exists():
        return Finding(f"no eval/{path.name}: run_all's evaluate stage makes it for 1 CNN", NOT_RUN,
                       (MAIN.name,))
    d = json.loads(path.read_text())
    c = one_sample(100 * (_bits(d["scaled"]["wrong"]) - _bits(d["geometric"]["wrong"]).astype(float)))
    lo, hi = c.interval
    verdict = (REPRODUCED if -EQUIVALENT <= lo and hi <= EQUIVALENT else
               CONTRADICTED if lo > EQUIVALENT or hi < -EQUIVALENT else NOISE)
    return Finding(f"top-1 ×0.5 {100 * d['scaled']['top1']:.1f}, geometric mean of {d['masks']} dropout "
                   f"networks {100 * d['geometric']['top1']:.1f}: "
                   f"{_images(c, '×0.5 − geometric mean')}, against ±{EQUIVALENT:g}; the two agree on "
                   f"{100 * d['agreement']:.1f}% of top-1 predictions", verdict, (MAIN.name,),
                   {"difference": c.diff, "agreement": d["agreement"], "masks": d["masks"]},
                   _interval_of(c), round(c.detectable, 2), {"images": c.seeds["n"], MAIN.name: 1})


# ---- claims of presence, against a null from the same data ----

def _is_result(res: Results, run: str) -> bool:
    """Whether a run is a result here: finished, trained as this code trains it, learned, not stopped."""
    if run == BASELINE.name or run in SEED_REPLICATES.runs:
        return run in {r["run"] for r in res.replicates()}
    return run in EVALUATIONS and res.verdict(EVALUATIONS[run]).errors is not None


def colour_null(share: np.ndarray) -> tuple[float, float, float]:
    """A run's towers' colour gap (tower 0's mean colour share − tower 1's) against random 48/48 splits of
    the same kernels (scipy's permutation test, NULL_SPLITS splits): (gap, two-sided p, gap ÷ the null's
    sd)."""
    half = len(share) // 2
    diff = lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis)  # noqa: E731
    t = scipy_stats.permutation_test((share[:half], share[half:]), diff, vectorized=True,
                                     n_resamples=NULL_SPLITS, random_state=0)
    return float(t.statistic), float(t.pvalue), float(t.statistic / t.null_distribution.std())


def towers_colour(res: Results) -> Finding:
    """Per run with two towers that is a result: the towers' gap in mean conv1 colour share
    (reproduce/figures.py) against random splits of its kernels (colour_null). The paper: one tower
    colour-agnostic, the other colour-specific, in every run."""
    from .figures import kernel_statistics
    files = {p.stem: p for p in sorted((res.root / "conv1").glob("*.npy"))}
    figure3 = res.root / "figures" / "conv1_kernels.npy"  # 1 CNN's, from folders made before conv1/ was
    if MAIN.runs[0] not in files and figure3.exists():
        files[MAIN.runs[0]] = figure3
    tested, one_runs = {}, set()
    for run, path in sorted(files.items(), key=lambda f: f[0] not in MAIN.runs):
        if run not in RUNS or RUNS[run][1].overrides.get("towers", 2) != 2 or not _is_result(res, run):
            continue  # one tower, or stopped, stale, unfinished or not learned: not a result
        exp, spec = RUNS[run]
        one = same_run(res.size(exp.scale), spec)
        if one in one_runs:  # baseline-short as 1 CNN's run: counted once
            continue
        one_runs.add(one)
        tested[run] = colour_null(kernel_statistics(np.load(path))["colour_share"])
    if not tested:
        return Finding("no finished run's conv1 kernels here (run_all keeps conv1/<run>.npy for each)",
                       NOT_RUN, ())
    split = {r: p < ALPHA for r, (_, p, _) in tested.items()}
    shown = ", ".join(f"{r} {g:+.2f} (z {z:+.1f})" for r, (g, _, z) in tested.items())
    return Finding(f"{sum(split.values())} of {len(tested)} runs split their towers' colour share beyond "
                   f"random 48/48 splits of their kernels (p < {ALPHA:g}; tower 0 − tower 1: {shown})",
                   REPRODUCED if all(split.values()) else NOT_REPRODUCED, tuple(tested),
                   {"gaps": {r: g for r, (g, _, _) in tested.items()},
                    "p": {r: p for r, (_, p, _) in tested.items()}},
                   seeds={"runs": len(tested)})


def kernels(res: Results) -> Finding:
    """1 CNN's conv1 kernels against §5's initialization (NULL_KERNELS kernels drawn i.i.d. normal; the
    statistics do not depend on the scale): for orientedness, low-frequency share and, for coloured blobs,
    colour share and low-frequency share together, the kernels beyond the null's 95th percentile, against
    the null's own share of them (scipy's binomial test). Reproduced when all three are beyond it."""
    from .figures import kernel_statistics
    if no := _main_run(res):
        return no
    path = res.root / "conv1" / f"{MAIN.runs[0]}.npy"
    if not path.exists():
        return Finding("no conv1/1cnn.npy (run_all keeps it for each finished run)", NOT_RUN, (MAIN.name,))
    w = kernel_statistics(np.load(path))
    null = kernel_statistics(np.random.default_rng(0).normal(size=(NULL_KERNELS, 3, 11, 11)))
    top = {k: np.percentile(v, 95) for k, v in null.items()}
    beyond = lambda s, *keys: np.all([s[k] > top[k] for k in keys], axis=0)  # noqa: E731
    tests = {"orientation-selective": ("orientedness",), "frequency-selective": ("low_frequency",),
             "coloured blobs": ("colour_share", "low_frequency")}
    found, n = {}, len(w["orientedness"])
    for name, keys in tests.items():
        k, p0 = int(beyond(w, *keys).sum()), max(float(beyond(null, *keys).mean()), 1 / NULL_KERNELS)
        found[name] = (k, p0, scipy_stats.binomtest(k, n, p0, "greater").pvalue)
    shown = "; ".join(f"{name} {k} of {n} (init {100 * p0:.1f}%, p {p:.2g})"
                      for name, (k, p0, p) in found.items())
    return Finding(f"kernels beyond the initialization's 95th percentile: {shown}",
                   REPRODUCED if all(p < ALPHA for _, _, p in found.values()) else NOT_REPRODUCED,
                   (MAIN.name,), {name: {"kernels": k, "null_share": p0, "p": p}
                                  for name, (k, p0, p) in found.items()}, seeds={MAIN.name: 1})


def neighbours(res: Results) -> Finding:
    """Figure 4's claim, query by query (figures/neighbours.json): the feature neighbours share the
    query's class more often than the pixel neighbours (paired interval above zero), and are not near the
    query in pixels ("not close in L2"): the interval of their percentile minus their class's lies above
    minus half the class's percentile, so they are shown to sit nearer to where an image of the class sits
    than to the nearest images in pixels (percentile 0). An interval that merely holds zero, too wide to
    tell, is not enough. The row's interval is the second: their percentile minus the class's."""
    path = res.root / "figures" / "neighbours.json"
    if not path.exists():
        return Finding("no neighbours.json: run_all's figures stage writes it from 1 CNN's features", NOT_RUN,
                       ("1cnn",))
    n = json.loads(path.read_text())
    if "per_query" not in n:
        return Finding("neighbours.json has no per-query numbers (made before they were recorded): "
                       "run_all's figures stage makes it again", NOT_RUN, ("1cnn",))
    q = {k: np.array(v) for k, v in n["per_query"].items()}
    share = one_sample(100 * (q["feature_agreement"] - q["pixel_agreement"]))
    near = one_sample(q["feature_percentile"] - q["same_class_percentile"])  # below 0: near in pixels
    margin = -0.5 * float(np.mean(q["same_class_percentile"]))  # halfway to the pixel neighbours' 0
    verdict = REPRODUCED if share.verdict == REPRODUCED and near.interval[0] > margin else NOT_REPRODUCED
    lo, hi = near.interval
    return Finding(f"{n['k']}-NN over {n['queries']} validation images: class agreement, last hidden layer "
                   f"{n['feature_agreement']:.2f} against pixels {n['pixel_agreement']:.2f} (chance "
                   f"{n['chance']:.2f}; {_images(share, 'difference')}); pixel-distance percentile, feature "
                   f"neighbours {n['pixel_percentile']:.0f} against their class's "
                   f"{n['same_class_percentile']:.0f} "
                   f"(feature neighbours − class {near.diff:+.1f} [{lo:+.1f}, {hi:+.1f}] percentile points; "
                   f"not near in pixels where it lies above {margin:+.1f}, halfway to the nearest)",
                   verdict, ("1cnn",), {k: v for k, v in n.items() if k != "per_query"},
                   _interval_of(near), round(near.detectable, 2), {"queries": n["queries"]})


# ---- Figure 1 (reproduce/figure1.py's runs) and the projection ----

def _figure1(res: Results) -> dict | None:
    """figure1.json when it is there and counts steps (made since 2026-12-06); None otherwise."""
    path = res.root / "figure1.json"
    f = json.loads(path.read_text()) if path.exists() else None
    return f if f and "window" in f else None


def relu(res: Results) -> Finding:
    """Figure 1: tanh's steps to 25% training error over ReLU's (figure1.ratio_test: geometric means over
    seeds, Welch's 95% interval on the log steps), against 1 for the sign and beside the paper's 6×."""
    from .figure1 import PAPER_RATIO, bounds, geometric_mean, ratio_test
    f = _figure1(res)
    if f is None:
        return _not_run(res, "fig1")
    r, t = f["relu"], f["tanh"]
    test = ratio_test(r["steps_to_25"], t["steps_to_25"], r["limit"], t["limit"])
    seeds = {"relu": len(r["steps_to_25"]), "tanh": len(t["steps_to_25"])}
    max_ratio = t["limit"] / geometric_mean(r["steps_to_25"], r["limit"])
    steps = lambda a: ", ".join(f"{s:,}" if s else f">{f[a]['limit']:,}" for s in f[a]["steps_to_25"])  # noqa: E731
    ours = (f"steps to 25% training error, ReLU {steps('relu')} (lr {r['lr']}), tanh {steps('tanh')} "
            f"(lr {t['lr']}); batch {f['batch']}, {f['net']}, {f['data']}")
    common = dict(runs=("fig1",), numbers={**test, "paper": PAPER_RATIO}, seeds=seeds, max_ratio=max_ratio)
    if test["failed"]:
        return Finding(ours + f": neither net reached 25% in {r['limit']:,} steps", FAILED, **common)
    low, high = test["interval"]
    shown = "–".join(bounds((low, high)))
    shown += f"; detectable {test['detectable']:.1f}×" if test["detectable"] else ""
    bound = {"lower": "at least ", "upper": "at most "}.get(test["bound"], "")
    ours += (f": tanh/ReLU {bound}{test['ratio']:.1f}× (95% interval {shown}; the window measures up to "
             f"{max_ratio:.1f}×; paper {PAPER_RATIO}×)")
    log_interval = (math.log(low) if low else -math.inf, math.log(high) if high else math.inf)
    return Finding(ours, from_interval(log_interval), interval=[low, high], detectable=test["detectable"],
                   **common)


def lrn_cifar(res: Results) -> Finding:
    """figure1.json's norm_pair: Figure 1's ReLU net with and without §3.3's normalization across maps,
    the same seeds; the test error without minus with, paired by seed (reproduce/stats.py's compare).
    Failed to train: an arm's mean test error not below half of chance (the tables' rule)."""
    from .figure1 import PAPER_NORM
    f = _figure1(res)
    pair = f.get("norm_pair") if f else None
    if pair is None:
        return _not_run(res, "fig1")
    arms = {k: dict(zip(pair["seeds"], (100 * e for e in pair[k]))) for k in ("with", "without")}
    mean = {k: statistics.fmean(v.values()) for k, v in arms.items()}
    norm = {"across-maps": "§3.3's normalization across maps",
            "same-map": "the 2012 code's same-map normalization"}.get(pair["norm"], pair["norm"])
    ours = (f"Figure 1's ReLU net with and without {norm}, seeds {', '.join(map(str, pair['seeds']))}, "
            f"{pair['steps']:,} steps, on {pair['test']}: {mean['without']:.1f} without, "
            f"{mean['with']:.1f} with")
    c = compare(arms["without"], arms["with"], helps=True)
    numbers = {"with": arms["with"], "without": arms["without"], "diff": c.diff, "how": c.how,
               "paper": PAPER_NORM}
    common = dict(runs=("fig1",), numbers=numbers, interval=list(c.interval), detectable=c.detectable,
                  seeds={k: len(v) for k, v in arms.items()})
    if max(mean.values()) >= 50 * pair["chance"]:
        return Finding(ours + f" (not below half of chance, {50 * pair['chance']:.0f}%: the nets did not "
                       "learn the test images)", FAILED, **common)
    return Finding(ours + f": without − with {c.shown(' points')}; paper {PAPER_NORM:+.1f}", c.verdict,
                   **common)


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
    "ten-patches": ten_patches,
    "dropout-overfit": lambda res: gap(res, "no-dropout"),
    "dropout-slower": dropout_slower,
    "dropout-mean": dropout_mean,
    "bias-early": bias_early,
    "wd-train": wd_train,
    "ensemble": ensemble,
    "towers-colour": towers_colour,
    "kernels": kernels,
    "neighbours": neighbours,
    "depth": lambda res: error_delta(res, "no-conv4", 2.0),
    "time": time,
}

NOTES = f"""
Every verdict is computed (reproduce/claims.py, reproduce/stats.py; reproduce/PAPER.md, "Claims: statistics"):
- a comparison gives the 95 % t interval of a difference taken in the paper's direction (points unless
  it says otherwise): reproduced when it lies above zero, contradicted when below, within noise when it
  holds zero. Arms: an ablation's runs (seed 0; seeds 1 and 2 with `--experiments paired-seeds`) against
  the baseline's seed replicates (baseline-short, seed 0, and the 5 CNNs' members, seeds 1–5, those that
  learned), paired seed by seed where both arms have two or more (same data order, augmentation and
  dropout draws, and initial weights where the shapes agree), Welch's otherwise; with one run in an arm,
  its sd is taken to be the other arm's. "detectable": the smallest true difference the design finds with
  80 % power at α = 0.05. Runs that failed to train are left out and named; all of them: failed to train;
- reduction: an ablation's top-1 minus the baseline's (centre patch);
- gap: validation top-1 minus top-1 on the training split, both centre patch with the net in eval mode
  (eval/<run>-train.json). An overfitting row whose nets have a training-split top-1 of {OVERFIT_TRAIN:g}% or
  more is not in its overfitting regime: they underfit, and the gap is not overfitting;
- convergence: the first epoch from which the validation top-1 (net in eval mode) stays within {CONVERGED:g}
  points of its last; early learning: the mean logged training top-1 over the first {EARLY:.0%} of the epochs;
- ten patches, ×0.5 and neighbours: paired image by image (per-image errors in eval/). ×0.5 approximates
  the geometric mean of 16 dropout networks when the interval lies within ±{EQUIVALENT:g} points;
- claims of presence, against a null from the same data, at α = {ALPHA:g}: the towers' colour gap
  (colour share: a kernel's power off its grey mean over its total power) against {NULL_SPLITS} random
  48/48 splits of the run's kernels, in every run that is a result; Figure 3's kernels against
  {NULL_KERNELS} kernels drawn as §5 initializes them (beyond the init's 95th percentile, binomial test);
  Figure 4's neighbours: the feature neighbours share the query's class more than the pixel
  neighbours, and are no nearer in pixels (percentile among the training images) than the query's class;
- the runs' ε schedule is the scale's (the header's recipe line): at cpu-full a fixed step for every run,
  not §5's plateau rule, so that compared runs share their ε at every epoch.
"""


def claims(res: Results) -> list[dict]:
    rows = []
    for c in CLAIMS:
        f = MEASURES[c.name](res)
        rows.append({**asdict(c), **asdict(f)})
    return rows


def _interval(r: dict) -> str:
    """The table's interval column: points of difference, or for Figure 1 (a row with max_ratio) a ratio."""
    if r["interval"] is None:
        return "—"
    (lo, hi), d = r["interval"], r["detectable"]
    if r.get("max_ratio") is not None:  # Figure 1: a ratio, whose ends may be open (figure1.bounds)
        from .figure1 import bounds
        return "[{}, {}]".format(*bounds((lo, hi))) + (f"; {d:.1f}×" if d is not None else "")
    return f"[{lo:+.1f}, {hi:+.1f}]" + (f"; {d:.1f}" if d is not None else "")


def write_claims(results: str | Path, dataset: str, scale: str, override: Override = Override()) -> Path:
    res = Results(results, scale, override)
    rows = claims(res)
    md = header(f"The paper's claims beyond its tables (ours: {dataset}, {scale} scale)", dataset, res)
    md += ("| § | claim | paper | ours | 95 % interval; detectable | runs | verdict |\n"
           "|---|---|---|---|---|---|---|\n")
    md += "".join(f"| {r['section']} | {r['claim']} | {r['paper']} | {r['ours']} | {_interval(r)} | "
                  f"{', '.join(f'{k} {n}' for k, n in r['seeds'].items()) or '—'} | **{r['verdict']}** |\n"
                  for r in rows)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    md += "\n" + ", ".join(f"{n} {v}" for v, n in counts.items() if n) + ".\n" + NOTES
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
