"""The statistics every comparison of the claims table uses (reproduce/claims.py), in one place.

A comparison is two arms of runs, the ablation's and its baseline's, each a number per seed. The
difference is taken in the paper's direction (positive: what the paper says), and three things are
reported (reproduce/PAPER.md, "Claims: statistics"):

- `interval`: the 95 % t interval of the mean difference. Paired (scipy's ttest_rel) when two or
  more seeds are in both arms: ablation seed k against baseline seed k, which share their data
  order, augmentation and dropout draws and, where the shapes agree, their initial weights
  (reproduce/experiments.py, "Pairing"). Welch's (ttest_ind, unequal variances) when both arms hold
  two or more runs that do not pair. With one run in an arm, that run's standard deviation cannot be
  measured: it is taken to be the other arm's (the replicates' sd of single runs), which is the pooled
  t interval with n_other − 1 degrees of freedom. The row says which.
- `detectable`: the smallest true difference this design finds with 80 % power at α = 0.05 (two
  sided), (t_{1−α/2} + t_{power}) × its standard error, the usual normal-shift approximation with t
  quantiles. Shown beside the paper's effect: when it is larger, "within noise" says nothing about
  the paper's size.
- the verdict: "reproduced" when the interval lies above zero (the paper's sign), "contradicted"
  when below, "within noise" when it holds zero; "needs seeds" when it excludes zero but an arm holds
  one run (a relapse of that run would read the same: more seeds decide it).

    from reproduce.stats import compare
    c = compare(ablation={0: 14.5, 1: 12.0}, baseline={0: 12.5, 1: 10.0, 2: 11.0})
    c.interval, c.detectable, c.verdict
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA, POWER = 0.05, 0.80
REPRODUCED, CONTRADICTED, NOISE = "reproduced", "contradicted", "within noise"
Z_POWER = float(stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER))  # the normal approximation's z sum
NEEDS_SEEDS = "needs seeds"  # an interval beyond zero from one run in an arm: an effect, or its relapse


@dataclass(frozen=True)
class Comparison:
    diff: float  # mean difference, ablation − baseline, in the paper's direction
    interval: tuple[float, float]  # 95 %
    detectable: float  # the smallest difference found with 80 % power
    se: float  # the standard error of `diff`
    df: float  # its degrees of freedom
    how: str  # "paired over n seeds", "Welch", "one run: the other arm's sd"
    seeds: dict  # {"ablation": n, "baseline": n}
    pairs: tuple = ()  # the seeds it paired, where it pairs seeds (one_sample's values are not seeds: ())

    @property
    def verdict(self) -> str:
        """from_interval's, except that one run in an arm decides nothing beyond "within noise": its sd is
        borrowed, so a run that relapsed (or kept another ε) reads as an effect. Such a row "needs seeds"."""
        verdict = from_interval(self.interval)
        return NEEDS_SEEDS if verdict != NOISE and min(self.seeds.values()) < 2 else verdict

    def shown(self, unit: str = "") -> str:
        lo, hi = self.interval
        return (f"{self.diff:+.1f}{unit} [{lo:+.1f}, {hi:+.1f}] ({self.how}; detectable "
                f"{self.detectable:.1f}{unit})")


def from_interval(interval: tuple[float, float]) -> str:
    """The verdict of an interval of a difference taken in the paper's direction."""
    lo, hi = interval
    return REPRODUCED if lo > 0 else CONTRADICTED if hi < 0 else NOISE


def detectable(se: float, df: float) -> float:
    """The true difference a two-sided test at ALPHA finds with probability POWER, for an estimate of
    standard error `se` on `df` degrees of freedom."""
    return float((stats.t.ppf(1 - ALPHA / 2, df) + stats.t.ppf(POWER, df)) * se)


def runs_needed(sd: float, effect: float) -> int:
    """Runs per arm that two independent arms of single runs with standard deviation `sd` need to find
    `effect` with POWER at ALPHA: 2((z_{1−α/2} + z_power) sd / effect)², the normal approximation
    (57 for sd 3.8 and 2 points)."""
    return math.ceil(2 * (Z_POWER * sd / effect) ** 2)


def pairs_needed(sd: float, effect: float) -> int:
    """Seed pairs whose differences have standard deviation `sd` that find `effect` as `detectable`
    counts it (t quantiles, n − 1 degrees of freedom): the smallest n ≥ 2 with detectable(sd/√n, n − 1)
    ≤ |effect|. Starts from the normal approximation, which t's wider quantiles only raise."""
    n = max(2, math.ceil((Z_POWER * sd / abs(effect)) ** 2))
    while detectable(sd / math.sqrt(n), n - 1) > abs(effect):
        n += 1
    return n


def sd_range(sd: float, df: int) -> tuple[float, float]:
    """The 95 % interval of a standard deviation estimated as `sd` on `df` degrees of freedom (the
    chi-square one): from 2 pairs (1 df) it spans 0.45 to 32 times the estimate."""
    return (sd * math.sqrt(df / stats.chi2.ppf(1 - ALPHA / 2, df)),
            sd * math.sqrt(df / stats.chi2.ppf(ALPHA / 2, df)))


def _interval(diff: float, se: float, df: float) -> tuple[float, float]:
    lo, hi = stats.t.interval(1 - ALPHA, df, loc=diff, scale=se)
    return float(lo), float(hi)


def _point(diff: float, df: float, how: str, seeds: dict, pairs: tuple = ()) -> Comparison:
    """A difference without spread (every pair, or every run, the same): its t interval is the point."""
    return Comparison(diff, (diff, diff), 0.0, 0.0, df, how, seeds, pairs)


def compare(ablation: dict, baseline: dict, helps: bool = True, paired: bool = True) -> Comparison:
    """Ablation − baseline (`helps`: the paper says the ablation's number is the higher one; False:
    the lower), each {seed: number}. Paired where two or more seeds are in both (unless `paired` is
    False: how wide the interval would be without the pairing); raises ValueError when an arm is empty
    or both hold one run."""
    a, b = (np.array(list(arm.values()), dtype=float) for arm in (ablation, baseline))
    if not len(a) or not len(b) or len(a) + len(b) < 3:
        raise ValueError(f"too few runs to compare: {len(a)} and {len(b)}")
    sign = 1.0 if helps else -1.0
    seeds = {"ablation": len(a), "baseline": len(b)}
    pairs = sorted(set(ablation) & set(baseline)) if paired else []
    if len(pairs) >= 2:
        seeds = {"ablation": len(pairs), "baseline": len(pairs)}
        d = sign * (np.array([ablation[s] for s in pairs]) - np.array([baseline[s] for s in pairs]))
        se, df = float(d.std(ddof=1) / math.sqrt(len(d))), len(d) - 1
        diff, how = float(d.mean()), f"paired over {len(d)} seeds"
        if se < 1e-9:
            return _point(diff, df, how, seeds, tuple(pairs))
        ci = stats.ttest_rel(sign * np.array([ablation[s] for s in pairs]),
                             sign * np.array([baseline[s] for s in pairs])).confidence_interval(1 - ALPHA)
        return Comparison(diff, (float(ci.low), float(ci.high)), detectable(se, df), se, df, how, seeds,
                          tuple(pairs))
    diff = sign * float(a.mean() - b.mean())
    if len(a) >= 2 and len(b) >= 2:
        if max(a.std(), b.std()) < 1e-9:
            return _point(diff, len(a) + len(b) - 2, "Welch", seeds)
        res = stats.ttest_ind(sign * a, sign * b, equal_var=False)
        ci = res.confidence_interval(1 - ALPHA)
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        return Comparison(diff, (float(ci.low), float(ci.high)), detectable(se, res.df), se, float(res.df),
                          "Welch", seeds)
    many = a if len(a) >= 2 else b  # one run in the other arm: it has the many's sd
    sd = float(many.std(ddof=1))
    se, df = sd * math.sqrt(1 + 1 / len(many)), len(many) - 1
    how = f"one run: its sd taken as the other arm's {sd:.1f}"
    if se < 1e-9:
        return _point(diff, df, how, seeds)
    return Comparison(diff, _interval(diff, se, df), detectable(se, df), se, df, how, seeds)


def one_sample(values, helps: bool = True) -> Comparison:
    """The mean of `values` (differences already, e.g. per image or per member) against zero."""
    d = (1.0 if helps else -1.0) * np.asarray(values, dtype=float)
    se, df = float(d.std(ddof=1) / math.sqrt(len(d))), len(d) - 1
    diff = float(d.mean())
    if se < 1e-9:
        return _point(diff, df, f"{len(d)} paired values", {"n": len(d)})
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(1 - ALPHA)
    return Comparison(diff, (float(ci.low), float(ci.high)), detectable(se, df), se, df,
                      f"{len(d)} paired values", {"n": len(d)})
