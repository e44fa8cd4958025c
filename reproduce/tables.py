"""The paper's tables from this project's result files, the paper's numbers beside ours.

Reads <results>/eval/<run>.json (python -m alexnet.evaluate) and <results>/figure1.json;
writes <results>/tables/{table1,table2,ablations}.{md,csv,json}. Every table's header
says what produced it. A number is shown only for a run that finished, learned (below half
of chance), and trained with the config this code gives it at this scale (each evaluation
records its checkpoints' configs): a folder's older evaluations, of runs made before a change
of settings and not selected since, are named, not mixed in.

    python -m reproduce.tables --results results/synthetic --dataset "embedded synthetic" --scale cpu
"""

from __future__ import annotations

if not __package__:  # `python reproduce/tables.py`: run as the module it is (its imports are the package's)
    import pathlib
    import runpy
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    sys.exit(runpy.run_module("reproduce.tables", run_name="__main__"))

import argparse
import csv
import io
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import astuple, dataclass
from functools import cached_property
from pathlib import Path

import torch

from alexnet.atomic import write_text
from alexnet.checkpoint import code_version, epoch_of
from alexnet.config import AlexNetConfig

from .experiments import (
    ABLATIONS,
    BASELINE,
    EVALUATIONS,
    EXPERIMENTS,
    MAIN,
    RUNS,
    SCALES,
    SEED_REPLICATES,
    STABILITY,
    TABLE1,
    TABLE2,
    Evaluation,
    Override,
    run_config,
)
from .stats import CONTRADICTED, NEEDS_SEEDS, NOISE, REPRODUCED

STOPPED = "stopped.json"  # run_all: [{"run", "stability", "why"}] for runs whose training stopped


NOT_TRAINED = "not trained:"  # how a stop record of a run whose pre-training stopped begins (run_all)
STOPPED_NONFINITE, NOT_LEARNED = "stopped on a non-finite loss", "did not learn"  # how those reasons begin


def stopped_records(results: str | Path) -> list[dict]:
    """A results folder's stopped.json: one {"run", "stability", "why"} per run and setting that
    stopped ("stability": the setting it trained under, "paper" for §5's values, None when recorded
    before settings were); [] when none did. Plans of several settings may share one folder, so a run
    is recorded once per setting. Reads the earlier form, {run: {"why", "stability"}} or {run: why}; a
    record without a setting counts for every setting, and any setting's record or clearing of that run
    replaces it (run_all.Plan.record_stopped)."""
    f = Path(results) / STOPPED
    raw = json.loads(f.read_text()) if f.exists() else []
    if isinstance(raw, dict):
        return [{"run": run, **(rec if isinstance(rec, dict) else {"why": rec, "stability": None})}
                for run, rec in raw.items()]
    return raw


def stopped_runs(results: str | Path, stability: str | None = None) -> dict[str, str]:
    """{run: why} for the runs of a results folder that stopped (a non-finite loss, or a pre-training
    that did), under `stability` ("paper" or a setting's name; None: under any)."""
    return {rec["run"]: rec["why"] for rec in stopped_records(results)
            if stability is None or rec["stability"] in (None, stability)}


def stopped_note(runs, stopped: dict[str, str]) -> str | None:
    """Why an evaluation of `runs` has no result, from stopped_runs' {run: why}: a run stopped on a
    non-finite loss, or was not trained because its pre-training did. None: none of them stopped."""
    hits = [f"{n}: {stopped[n]}" for n in runs if n in stopped]
    if not hits:
        return None
    if all(stopped[n].startswith(NOT_TRAINED) for n in runs if n in stopped):  # a dependant's
        return "; ".join(hits)
    return f"{STOPPED_NONFINITE} (" + "; ".join(hits) + ")"


@dataclass(frozen=True)
class Verdict:
    """Whether an evaluation's number is a result: its errors if so (else None), the views they
    come from, and why it is not one otherwise."""
    errors: dict | None
    views: str
    why: str


def _short(checkpoint: dict, size) -> bool:
    """An evaluated checkpoint from before its size's last epoch: a run that did not finish."""
    return size is not None and epoch_of(Path(checkpoint["path"])) < size.epochs


class Results:
    """The result files of one results folder, and the rules that decide what counts as a result."""

    def __init__(self, root: Path, scale: str, override: Override = Override()):
        self.root, self.scale, self._asked = Path(root), scale, override  # run_all's --epochs, ...
        self._evals: dict[str, dict | None] = {}  # each eval file read once
        self._verdicts: dict[str, Verdict] = {}  # and judged once

    @cached_property
    def override(self) -> Override:
        """run_all's --epochs, --batch-size and --stability, the stability setting chosen by the same
        rule as run_all's (choose_stability) when --stability was not given."""
        return self._asked.resolved(self.classes, self.scale)

    def size(self, kind: str):
        """The size the `main` or `short` runs trained at: the scale's, with run_all's --epochs,
        --batch-size and --stability."""
        return SCALES[self.scale].size(kind, self.override)

    def eval(self, run: str) -> dict | None:
        if run not in self._evals:
            p = self.root / "eval" / f"{run}.json"
            self._evals[run] = json.loads(p.read_text()) if p.exists() else None
        return self._evals[run]

    def verdict(self, ev: Evaluation, name: str | None = None) -> Verdict:
        """Whether an evaluation's number is a result (`name`: its file, when not ev.name, as for
        its test-split evaluation). Judged once; every table formats it."""
        name = name or ev.name
        if name not in self._verdicts:
            self._verdicts[name] = self._judge(ev, name)
        return self._verdicts[name]

    def _judge(self, ev: Evaluation, name: str) -> Verdict:
        err, views = self.errors(name)
        if stopped := self.stopped_note(ev):
            return Verdict(None, "", f"{stopped}: not a result")
        if err is None:
            if self.size(ev.scale) is None:
                return Verdict(None, "", self.not_run_note(ev))
            return Verdict(None, "", f"not run: run the {name} experiment")
        if short := self.short_of(name):
            return Verdict(None, views, f"{short}: not a result")
        if stale := self.stale(name):
            return Verdict(None, views, f"{stale}: not a result of this code")
        if not self.learned(err):
            return Verdict(None, views, f"{NOT_LEARNED} at this scale (top-1 {100 * err['top1']:.1f}%, "
                                        f"chance {100 * self.chance()[0]:.1f}%): not a result")
        return Verdict(err, views, "")

    def failed(self, ev: Evaluation) -> str | None:
        """Why an evaluation's runs failed to train, where they did: a run stopped on a non-finite loss,
        or finished (as this code trains it) without learning; None otherwise (a result, or not run)."""
        why = self.verdict(ev).why
        return why if why.startswith(STOPPED_NONFINITE) or why.startswith(NOT_LEARNED) else None

    def errors(self, run: str) -> tuple[dict | None, str]:
        """The best view mode evaluated for a run (ten patches, else centre) and its name."""
        e = self.eval(run)
        if e is None:
            return None, ""
        for v, label in (("ten", "10 patches"), ("center", "centre patch")):
            if v in e["ensemble"]:
                return self.shown(e["ensemble"][v]), label
        return None, ""

    def shown(self, err: dict) -> dict:
        """An evaluation's errors as the tables give them: without top-5 where it means nothing."""
        return err if self.top5_means_something else {**err, "top5": None}

    @property
    def top5_means_something(self) -> bool:
        """False with 5 classes or fewer: five guesses cover every class, so top-5 error is 0."""
        return (self.classes or 1000) > 5

    @cached_property
    def classes(self) -> int | None:
        for f in sorted((self.root / "eval").glob("*.json")):
            return self.eval(f.stem).get("classes")  # through eval's cache: the file is read once
        return None

    def chance(self) -> tuple[float, float]:
        """Top-1 and top-5 error of a guess, as fractions: top-k misses with probability max(0, 1 − k/C)."""
        c = self.classes or 1000
        return 1 - 1 / c, max(0.0, 1 - 5 / c)

    def stopped(self) -> dict[str, str]:
        """The runs of this setting that stopped (stopped.json)."""
        return stopped_runs(self.root, self.override.stability)

    def stopped_note(self, ev: Evaluation) -> str | None:
        """Which of an evaluation's runs stopped on a non-finite loss, and where; None: none did."""
        return stopped_note(ev.runs, self.stopped())

    def run_size(self, checkpoint: dict):
        """The size an evaluated checkpoint's run trains at here (None: not a registered run)."""
        exp, _ = RUNS.get(Path(checkpoint["path"]).parent.name, (None, None))
        return self.size(exp.scale) if exp else None

    def short_of(self, name: str) -> str | None:
        """Why an evaluation is no result of its runs' size: a checkpoint it evaluated is from
        before the size's last epoch (the run did not finish)."""
        short = [(Path(c["path"]), self.run_size(c)) for c in (self.eval(name) or {}).get("checkpoints", [])
                 if _short(c, self.run_size(c))]
        if not short:
            return None
        return (", ".join(f"{p.parent.name} stopped after epoch {epoch_of(p)} of {size.epochs}"
                          for p, size in short) + " (it did not finish: see its log)")

    def other_settings(self, checkpoint: dict) -> str | None:
        """Why an evaluated checkpoint is no result of today's run: the config its run trained with
        (recorded in the evaluation) differs from what this code trains for that run at this scale,
        e.g. a run made before a schedule change, left in a results folder that later runs share.
        None when they agree (or for a run this scale does not train)."""
        recorded = checkpoint.get("config")
        name = Path(checkpoint["path"]).parent.name
        exp, run = RUNS.get(name, (None, None))
        size = self.size(exp.scale) if exp else None
        if size is None:
            return None
        if recorded is None:  # nothing says what it trained with: never taken for today's run
            return (f"{name}'s evaluation records no config it trained with (made before evaluations "
                    "recorded one)")
        was = AlexNetConfig.from_dict(recorded)
        diff = was.differences(run_config(run, size, was.num_classes))
        changed = ", ".join(f"{k} {a!r} (now {b!r})" for k, (a, b) in diff.items())
        return f"{name} was trained with {changed}" if diff else None

    def stale(self, run: str) -> str | None:
        """Why a run's evaluation is no result of today's code (other_settings of its checkpoints)."""
        found = [o for c in (self.eval(run) or {}).get("checkpoints", []) if (o := self.other_settings(c))]
        return "; ".join(found) + " (run it again)" if found else None

    def learned(self, err: dict | None) -> bool:
        """The rule for every number the tables present: top-1 error below half of chance."""
        # rounded: 6 of 18 at 3 classes is exactly half of chance, which 1 − 1/3 in binary would put below it
        return err is not None and round(err["top1"], 9) < round(self.chance()[0] / 2, 9)

    @cached_property
    def finished_replicates(self) -> list[tuple[str, dict]]:
        """The baseline configuration's seed replicates at the short size that finished and trained as
        today: baseline-short and the 5cnns members (centre patch), each (run, errors). Worked out once."""
        out = []
        stopped = self.stopped()
        base, _ = self.errors(BASELINE.name)
        if base and BASELINE.name not in stopped and not self.stale(BASELINE.name) \
                and not self.short_of(BASELINE.name):
            out.append((BASELINE.name, base))
        members = self.eval(SEED_REPLICATES.name)
        size = self.size("short")
        for m in (members or {}).get("checkpoints", []):
            if _short(m, size) or Path(m["path"]).parent.name in stopped or self.other_settings(m):
                continue  # stopped short, or trained with other settings: not a replicate
            out.append((Path(m["path"]).parent.name, self.shown(m["center"])))
        return out

    def replicates(self) -> list[dict]:
        """Of the finished replicates, those that learned, each {"run", "top1", "top5"} in percent: a
        run at chance is a failure, not a sample of the seed-to-seed spread."""
        return [{"run": run, "top1": _percent(err, "top1"), "top5": _percent(err, "top5")}
                for run, err in self.finished_replicates if self.learned(err)]

    def members_at_chance(self) -> list[str]:
        """The 5 CNNs' finished members that did not learn, each 'run (top-1 x%)': the ensemble averages
        them in as trained, the replicates leave them out."""
        return [f"{run} (top-1 {_percent(err, 'top1'):.1f}%)" for run, err in self.finished_replicates
                if run in SEED_REPLICATES.runs and not self.learned(err)]

    def band(self) -> dict | None:
        """Mean and sample standard deviation (n − 1) of the replicates, when there are two or more."""
        reps = self.replicates()
        if len(reps) < 2:
            return None
        out = {"n": len(reps), "of": len(self.finished_replicates), "runs": [r["run"] for r in reps]}
        for k in ("top1", "top5"):
            values = [r[k] for r in reps]
            shown = None not in values
            out[k] = round(statistics.mean(values), 2) if shown else None
            out[f"{k}_sd"] = round(statistics.stdev(values), 2) if shown else None
        return out

    def minutes_for_short_runs(self, runs: int) -> float | None:
        """What `runs` short runs at the cpu-full size would take here, from the main run's measured
        epoch time."""
        log = self.root / "logs" / f"{MAIN.runs[0]}.jsonl"
        if not log.exists():
            return None
        epochs = [json.loads(line) for line in log.read_text().splitlines()]
        per_epoch = statistics.median(h["seconds"] for h in epochs) + 2  # + validation
        return runs * SCALES["cpu-full"].short.epochs * per_epoch / 60

    def not_run_note(self, ev: Evaluation) -> str:
        runs = len(ev.runs)
        minutes = self.minutes_for_short_runs(runs)
        return ("not run at this scale (needs --scale cpu-full" +
                (f", about {minutes:.0f} min here for its {runs} run(s))" if minutes else ")"))


def _replicates_note(band: dict) -> str:
    """'6 replicates: a, b, …', or '4 of 6 replicates, the ones that learned: a, b, …'."""
    which = (f"{band['n']} replicates" if band["n"] == band["of"] else
             f"{band['n']} of {band['of']} replicates, the ones that learned")
    return f"{which}: {', '.join(band['runs'])}"


def _percent(err: dict | None, k: str) -> float | None:
    """An error as a table holds it: percent, two decimals; None for none."""
    return None if not err or err[k] is None else round(100 * err[k], 2)


def _pct(x) -> str:
    """A number already in percent, or — for none."""
    return "—" if x is None else f"{x:.1f}"


def _pm(mean, sd) -> str:
    return "—" if mean is None else f"{mean:.1f} ± {sd:.1f}"


def markdown(rows: list[dict], columns: list[tuple[str, object]]) -> str:
    """A markdown table: one (header, cell) pair a column, where a cell is a row's key (a number in
    percent, shown by _pct) or a function of the row that returns the cell's text."""
    def cell(row, how):
        return how(row) if callable(how) else _pct(row[how])
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r, how) for _, how in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available() else [])
    return (", ".join(gpus) + " + " if gpus else "no GPU, ") + f"{os.cpu_count()} CPU cores ({cpu})"


def header(title: str, dataset: str, res: Results) -> str:
    scale = SCALES[res.scale]
    c1, c5 = res.chance()
    short = res.size("short").describe() if scale.short else "not run"
    override = f"; {res.override.describe()}" if res.override.describe() else ""
    c = res.classes or 1000
    chance = (f"chance {100 * c1:.1f} / {100 * c5:.1f}" if res.top5_means_something else
              f"chance {100 * c1:.1f} top-1; **no top-5 numbers**: with {c} classes five "
              "guesses cover every class")
    if 5 < c <= 10:
        chance += (f"; **top-5 says little with {c} classes** (a guess is in the top 5 {5 / c:.0%} of the "
                   "time)")
    return (f"# {title}\n\n"
            f"- dataset: {dataset}; {res.classes or '?'} classes; {chance}\n"
            f"- profile: paper (unless a row says otherwise; it decays the biases and divides their ε with "
            f"the weights', our reading of §5)\n"
            f"- scale `{scale.name}` ({scale.why}{override}): main runs {res.size('main').describe()}; "
            f"short runs {short}\n"
            f"- recipe: {res.size('main').recipe()}" + (f" ({res.override.why})" if res.override.why else "")
            + f"\n- hardware: {hardware()}\n- commit: {code_version()}\n"
            f"- date: {time.strftime('%Y-%m-%d')}\n"
            f"- numbers: top-1 / top-5 error in percent; paper from Krizhevsky et al. 2012. A number is "
            f"shown only for a run whose top-1 error is below half of chance ({50 * c1:.1f}%); ± is the "
            f"sample standard deviation over seed replicates at the same scale\n\n")


def _write(tables: Path, name: str, md: str, rows: list[dict]) -> None:
    tables.mkdir(parents=True, exist_ok=True)
    write_text(tables / f"{name}.md", md)
    write_text(tables / f"{name}.json", json.dumps(rows, indent=1))
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_text(tables / f"{name}.csv", out.getvalue())


def table1(res: Results, dataset: str, is_2010: bool) -> tuple[str, list[dict]]:
    on_test = is_2010 and res.eval(MAIN.test_name) is not None  # Table 1 is ILSVRC-2010's test set
    err, views, why = astuple(res.verdict(MAIN, MAIN.test_name if on_test else None))
    rows = []
    for model, p1, p5 in TABLE1:
        if model == "CNN":
            if err and not on_test:
                why = (f"on {dataset} (val split, {views}), not ILSVRC-2010 test: give --imagenet2010 DIR "
                       "(with a test/ split) for Table 1 proper")
            elif err:
                why = f"ILSVRC-2010 test split, {views}"
            rows.append({"model": model, "paper_top1": p1, "paper_top5": p5,
                         "ours_top1": _percent(err, "top1"), "ours_top5": _percent(err, "top5"),
                         "note": why})
        else:
            rows.append({"model": model, "paper_top1": p1, "paper_top5": p5, "ours_top1": None,
                         "ours_top5": None, "note": "not a CNN: outside this reproduction"})
    title = f"Table 1 (paper: ILSVRC-2010 test; ours: {dataset}, {res.scale} scale)"
    md = header(title, dataset, res) + markdown(rows, [
        ("Model", lambda r: r["model"]), ("paper top-1", "paper_top1"), ("paper top-5", "paper_top5"),
        ("ours top-1", "ours_top1"), ("ours top-5", "ours_top5"), ("note", lambda r: r["note"])])
    return md, rows


def table2(res: Results, dataset: str, test_note: str) -> tuple[str, list[dict]]:
    rows = []
    band = res.band()
    by_row = {ev.row: ev for ev in EVALUATIONS.values() if ev.row}
    for model, p1, p5, p5t in TABLE2:
        ev = by_row.get(model)
        err, views, note = astuple(res.verdict(ev)) if ev else (None, "", "")
        # the experiments it combines, in order
        combined = [EXPERIMENTS[n] for n in dict.fromkeys(RUNS[r][0].name for r in ev.runs)] if ev else []
        needed = [exp for exp in combined if exp.needs]
        if ev is None:
            note = "not a CNN: outside this reproduction"
        elif needed and res.eval(ev.name) is None and not res.stopped_note(ev):  # other data, then its parts
            missing = [exp.name for exp in combined if res.eval(exp.name) is None]
            note = (needed[0].needs if needed[0].name in missing
                    else f"needs the {', '.join(missing)} experiment too (run both)")
        elif err and ev is MAIN and band and res.size("short") == res.size("main"):
            note = (f"{views}; its seed replicates at its size (centre patch; {BASELINE.name} is this run's "
                    f"configuration and seed): top-1 {_pm(band['top1'], band['top1_sd'])}")
        elif err and ev is MAIN and res.scale == "cpu":
            note = (f"{views}; one run: no seed replicates at its size; --scale cpu-full measures their "
                    "spread, which is what another machine type gives (results/synthetic/README.md)")
        elif err and ev is MAIN:
            note = f"{views}; one run: no seed replicates at its size"
        elif err and ev is SEED_REPLICATES:
            members = [r["top1"] for r in res.replicates() if r["run"] != BASELINE.name]
            alone = (f"; one member alone: {_pm(statistics.mean(members), statistics.stdev(members))} top-1"
                     if len(members) > 1 else "")
            failed = ", ".join(res.members_at_chance())
            failed = f"; failed to train, in the average: {failed}" if failed else ""
            note = f"{views}; {ev.note}{alone}{failed}"
        elif err:
            note = f"{views}; {ev.note}"
        rows.append({"model": model, "paper_top1_val": p1, "paper_top5_val": p5, "paper_top5_test": p5t,
                     "ours_top1_val": _percent(err, "top1"),
                     "ours_top5_val": _percent(err, "top5"),
                     "ours_top5_test": None, "note": note + (f"; test: {test_note}" if err else "")})
    md = header(f"Table 2 (paper: ILSVRC-2012; ours: {dataset}, {res.scale} scale)", dataset, res)
    md += markdown(rows, [
        ("Model", lambda r: r["model"]), ("paper top-1 (val)", "paper_top1_val"),
        ("paper top-5 (val)", "paper_top5_val"), ("paper top-5 (test)", "paper_top5_test"),
        ("ours top-1 (val)", "ours_top1_val"), ("ours top-5 (val)", "ours_top5_val"),
        ("ours top-5 (test)", "ours_top5_test"), ("note", lambda r: r["note"])])
    md += ("\nThe paper's 1 CNN (40.7 / 18.2): the 2012 code's log has 40.66 / 18.21 for that run without "
           "saying whether one or ten patches were used; its 1 CNN* (39.0 / 16.6) is tagged \"multiview\" "
           "(reproduce/PAPER.md).\n")
    if band:
        md += ("\nSeed-to-seed spread of one run of the baseline configuration at the short size "
               f"({_replicates_note(band)}): top-1 "
               f"{_pm(band['top1'], band['top1_sd'])}, top-5 {_pm(band['top5'], band['top5_sd'])}.\n")
    return md, rows


# the ablation table's words for reproduce/stats.py's verdicts (the difference taken as the feature's help)
_ABLATION_VERDICT = {REPRODUCED: "the feature helps", CONTRADICTED: "the feature hurts", NOISE: NOISE,
                     NEEDS_SEEDS: NEEDS_SEEDS}


def ablations(res: Results, dataset: str) -> tuple[str, list[dict]]:
    from .claims import Compared, error_comparison  # claims reads Results from here
    band = res.band()
    base_ok = band is not None and band["top1"] < 50 * res.chance()[0]
    rows = []
    for name in ABLATIONS:
        exp = EXPERIMENTS[name]
        err, views, note = astuple(res.verdict(EVALUATIONS[name]))
        p1, p5 = exp.paper_reduction or (None, None)
        red, interval, detect = (None, None), None, None
        verdict, seeds, over = note, [0] if err else [], None
        if base_ok:
            if err:
                red = tuple(None if band[k] is None or err[k] is None else round(100 * err[k] - band[k], 2)
                            for k in ("top1", "top5"))
            got = error_comparison(res, name)  # seed 0 and, where they were run, the paired seeds
            if isinstance(got, Compared):  # the interval of the reduction (top-1), as the claims table has it
                interval, detect = [round(x, 2) for x in got.c.interval], round(got.c.detectable, 2)
                verdict = f"{_ABLATION_VERDICT[got.c.verdict]}: {got.said()}"
                seeds = got.used("ablation")
                if len(seeds) > 1 or not err:  # top-1 and its reduction over the seeds compared
                    over = [round(got.mean(arm), 2) for arm in ("ablation", "baseline")]
                    red = (round(got.c.diff, 2), red[1])
            elif err:
                verdict = got.ours
        elif err:
            verdict = "no baseline band to compare with (run baseline-short and 5cnns at this scale)"
        size = res.size(exp.scale)
        rows.append({"ablation": name, "what": exp.what,
                     "paper_reduction_top1": p1, "paper_reduction_top5": p5,
                     "paper_note": exp.paper_note,
                     "ours_top1": _percent(err, "top1"), "ours_top5": _percent(err, "top5"),
                     "seeds": seeds, "ours_top1_over_seeds": over and over[0],
                     "baseline_top1_over_seeds": over and over[1],
                     "baseline_top1": band and band["top1"], "baseline_top1_sd": band and band["top1_sd"],
                     "baseline_top5": band and band["top5"], "baseline_top5_sd": band and band["top5_sd"],
                     "ours_reduction_top1": red[0], "ours_reduction_top5": red[1],
                     "interval_top1": interval, "detectable_top1": detect, "verdict": verdict,
                     "scale": f"{exp.scale}: {size.describe()}" if size else "not run at this scale",
                     "views": views})
    title = f"Ablations from the text (paper: ILSVRC-2010/2012; ours: {dataset}, {res.scale} scale)"
    md = header(title, dataset, res)
    md += ("Reduction = error without the feature − error with it, the latter being the mean of the "
           "baseline configuration's seed replicates at the same size (baseline-short and the five 5cnns "
           "members, those that finished and learned"
           + (f"; here {_replicates_note(band)}" if band else "")
           + "). Where an ablation has more seeds (`--experiments paired-seeds`), its top-1 reduction is "
           "over its seeds that learned, paired with the replicate of the same seed where it learned (the "
           "mean of the differences; seeds without one are left out and named), and its top-1 is shown for "
           "seed 0 and over those seeds against the same seeds' replicates; top-5 stays seed 0's. "
           "Positive: the feature helps. The verdict is the 95 % interval of the top-1 reduction "
           "(paired by seed where the ablation has two or more seeds; with one run, that run's sd is taken "
           "as the replicates'): the feature helps or hurts when it excludes zero, within noise when it "
           "holds zero, needs seeds when it excludes zero from one run (a relapse would read the same); "
           "beside it the smallest reduction the design detects (80 % power), as in claims.md "
           "(reproduce/stats.py).\n\n")
    def pair(a, b, show=_pct):
        return lambda r: f"{show(r[a])} / {show(r[b])}"
    md += markdown(rows, [
        ("ablation", lambda r: r["ablation"]), ("what", lambda r: r["what"]),
        ("paper reduction top-1 / top-5", lambda r: pair("paper_reduction_top1", "paper_reduction_top5")(r)
         + (f" ({r['paper_note']})" if r["paper_note"] else "")),
        ("ours: ablated top-1 / top-5", lambda r: pair("ours_top1", "ours_top5")(r) + (
            f"; top-1 over seeds {', '.join(map(str, r['seeds']))}: {r['ours_top1_over_seeds']:.1f} against "
            f"the compared replicates' {r['baseline_top1_over_seeds']:.1f}"
            if r["ours_top1_over_seeds"] is not None else "")),
        ("baseline top-1 / top-5 (mean ± sd)",
         lambda r: f"{_pm(r['baseline_top1'], r['baseline_top1_sd'])} / "
                   f"{_pm(r['baseline_top5'], r['baseline_top5_sd'])}"),
        ("our reduction top-1 / top-5", pair("ours_reduction_top1", "ours_reduction_top5")),
        ("verdict", lambda r: r["verdict"]), ("size", lambda r: r["scale"])])
    fig1 = res.root / "figure1.json"
    if fig1.exists():
        f = json.loads(fig1.read_text())
        if "window" in f:  # steps counted (since 2026-12-07)
            md += f"\nFigure 1 (ReLU vs tanh, {f['net']}, on {f['data']}): {f['verdict']}.\n"
    return md, rows


def write_tables(results: str | Path, dataset: str, scale: str, is_2010: bool = False,
                 test_note: str = "this dataset has no test split", override: Override = Override()) -> Path:
    res = Results(results, scale, override)
    tables = res.root / "tables"
    for name, (md, rows) in {"table1": table1(res, dataset, is_2010),
                             "table2": table2(res, dataset, test_note),
                             "ablations": ablations(res, dataset)}.items():
        _write(tables, name, md, rows)
    return tables


def add_run_options(ap: argparse.ArgumentParser) -> None:
    """--epochs, --batch-size, --stability: what run_all was given, so a results folder is read as made."""
    ap.add_argument("--epochs", type=int, help="the runs' epochs, when run_all was given --epochs")
    ap.add_argument("--batch-size", type=int,
                    help="the runs' batch size, when run_all was given --batch-size")
    ap.add_argument("--stability", choices=["paper", *STABILITY],
                    help="the runs' stability setting, when run_all was given --stability (default: "
                         "the one run_all chooses for these classes, batch and scale: "
                         "reproduce.experiments.choose_stability)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reproduce.tables", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True)
    ap.add_argument("--dataset", required=True, help="name of the dataset, for the headers")
    ap.add_argument("--scale", choices=list(SCALES), required=True)
    ap.add_argument("--ilsvrc2010", action="store_true", help="the 1cnn evaluation is on ILSVRC-2010")
    ap.add_argument("--test-note", default="this dataset has no test split")
    add_run_options(ap)
    args = ap.parse_args(argv)
    out = write_tables(args.results, args.dataset, args.scale, args.ilsvrc2010, args.test_note,
                       Override(args.epochs, args.batch_size, args.stability))
    print(f"tables → {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
