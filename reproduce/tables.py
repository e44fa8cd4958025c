"""The paper's tables from this project's result files, the paper's numbers beside ours.

Reads <results>/eval/<run>.json (python -m alexnet.evaluate) and <results>/figure1.json;
writes <results>/tables/{table1,table2,ablations}.{md,csv,json}. Every table's header
says what produced it.

    python -m reproduce.tables --results results/synthetic --dataset "embedded synthetic" --scale embedded
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from alexnet.atomic import write_text
from alexnet.checkpoint import code_version

from .experiments import ABLATIONS, BASELINE, EXPERIMENTS, SCALES, TABLE1, TABLE2


def _pct(x) -> str:
    """A number already in percent, or — for none."""
    return "—" if x is None else f"{x:.1f}"


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return (", ".join(gpus) + " + " if gpus else "no GPU, ") + f"{os.cpu_count()} CPU cores ({cpu})"


class Results:
    def __init__(self, root: Path):
        self.root = Path(root)

    def eval(self, run: str) -> dict | None:
        p = self.root / "eval" / f"{run}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def errors(self, run: str) -> tuple[dict | None, str]:
        """The best view mode evaluated for a run (ten patches, else centre) and its name."""
        e = self.eval(run)
        if e is None:
            return None, ""
        for v, label in (("ten", "10 patches"), ("center", "centre patch")):
            if v in e["ensemble"]:
                return e["ensemble"][v], label
        return None, ""


def header(title: str, dataset: str, scale: str, res: Results) -> str:
    return (f"# {title}\n\n"
            f"- dataset: {dataset}\n- profile: paper (unless a row says otherwise)\n"
            f"- scale ({scale}): main runs {SCALES[scale]['main'].describe()}; "
            f"short runs {SCALES[scale]['short'].describe()}\n"
            f"- hardware: {hardware()}\n- commit: {code_version()}\n- date: {time.strftime('%Y-%m-%d')}\n"
            f"- numbers: top-1 / top-5 error in percent; paper from Krizhevsky et al. 2012\n\n")


def _write(tables: Path, name: str, md: str, rows: list[dict]) -> None:
    tables.mkdir(parents=True, exist_ok=True)
    write_text(tables / f"{name}.md", md)
    write_text(tables / f"{name}.json", json.dumps(rows, indent=1))
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_text(tables / f"{name}.csv", out.getvalue())


def table1(res: Results, dataset: str, scale: str, is_2010: bool) -> tuple[str, list[dict]]:
    on_test = is_2010 and res.eval("1cnn-test") is not None  # Table 1 is ILSVRC-2010's test set
    err, views = res.errors("1cnn-test" if on_test else "1cnn")
    rows = []
    for model, p1, p5 in TABLE1:
        if model == "CNN":
            why = "" if err else "not run: run the 1cnn experiment"
            if err and not on_test:
                why = (f"on {dataset} (val split, {views}), not ILSVRC-2010 test: give --imagenet2010 DIR "
                       "(with a test/ split) for Table 1 proper")
            elif err:
                why = f"ILSVRC-2010 test split, {views}"
            rows.append({"model": model, "paper_top1": p1, "paper_top5": p5,
                         "ours_top1": err and round(100 * err["top1"], 2), "ours_top5": err and round(100 * err["top5"], 2),
                         "note": why})
        else:
            rows.append({"model": model, "paper_top1": p1, "paper_top5": p5, "ours_top1": None, "ours_top5": None,
                         "note": "not a CNN: outside this reproduction"})
    md = header("Table 1: ILSVRC-2010 test set", dataset, scale, res)
    md += "| Model | paper top-1 | paper top-5 | ours top-1 | ours top-5 | note |\n|---|---|---|---|---|---|\n"
    md += "".join(f"| {r['model']} | {_pct(r['paper_top1'])} | {_pct(r['paper_top5'])} | {_pct(r['ours_top1'])} | "
                  f"{_pct(r['ours_top5'])} | {r['note']} |\n" for r in rows)
    return md, rows


def table2(res: Results, dataset: str, scale: str, test_note: str) -> tuple[str, list[dict]]:
    rows = []
    for model, p1, p5, p5t in TABLE2:
        run = {"1 CNN": "1cnn", "5 CNNs": "5cnns", "1 CNN*": "1cnn-star"}.get(model)
        err, views = res.errors(run) if run else (None, "")
        if model.startswith("SIFT"):
            note = "not a CNN: outside this reproduction"
        elif "*" in model:
            note = EXPERIMENTS["1cnn-star"].needs
        elif err is None:
            note = f"not run: run the {run} experiment"
        else:
            sc = EXPERIMENTS[run].scale
            note = f"{views}; {sc} scale" + ("; 5 runs of seeds 1–5, softmax averaged" if run == "5cnns" else "")
        rows.append({"model": model, "paper_top1_val": p1, "paper_top5_val": p5, "paper_top5_test": p5t,
                     "ours_top1_val": err and round(100 * err["top1"], 2),
                     "ours_top5_val": err and round(100 * err["top5"], 2),
                     "ours_top5_test": None, "note": note + (f"; test: {test_note}" if err else "")})
    md = header("Table 2: ILSVRC-2012 validation and test sets", dataset, scale, res)
    md += ("| Model | paper top-1 (val) | paper top-5 (val) | paper top-5 (test) | ours top-1 (val) | "
           "ours top-5 (val) | ours top-5 (test) | note |\n|---|---|---|---|---|---|---|---|\n")
    md += "".join(f"| {r['model']} | {_pct(r['paper_top1_val'])} | {_pct(r['paper_top5_val'])} | "
                  f"{_pct(r['paper_top5_test'])} | {_pct(r['ours_top1_val'])} | {_pct(r['ours_top5_val'])} | "
                  f"{_pct(r['ours_top5_test'])} | {r['note']} |\n" for r in rows)
    return md, rows


def ablations(res: Results, dataset: str, scale: str) -> tuple[str, list[dict]]:
    base, base_views = res.errors(BASELINE.name)
    rows = []
    for name in ABLATIONS:
        exp = EXPERIMENTS[name]
        err, views = res.errors(exp.runs[0].name)
        p1, p5 = exp.paper_reduction or (None, None)
        red = (None, None) if not (err and base) else (
            round(100 * (err["top1"] - base["top1"]), 2), round(100 * (err["top5"] - base["top5"]), 2))
        rows.append({"ablation": name, "what": exp.what, "paper_reduction_top1": p1, "paper_reduction_top5": p5,
                     "paper_note": exp.paper_note,
                     "ours_top1": err and round(100 * err["top1"], 2), "ours_top5": err and round(100 * err["top5"], 2),
                     "baseline_top1": base and round(100 * base["top1"], 2),
                     "baseline_top5": base and round(100 * base["top5"], 2),
                     "ours_reduction_top1": red[0], "ours_reduction_top5": red[1],
                     "scale": f"{exp.scale}: {SCALES[scale][exp.scale].describe()}" if err else "not run",
                     "views": views})
    md = header("Ablations from the text: the reduction in error each feature brings", dataset, scale, res)
    md += ("Reduction = error without the feature − error with it (the paper profile at the same scale, run "
           f"`{BASELINE.name}`). Positive: the feature helps. At the embedded short scale (a few batches) "
           "these differences are dominated by noise.\n\n")
    classes = (res.eval(BASELINE.name) or {}).get("classes")
    if base and classes and base["top1"] >= 1 - 1 / classes - 1e-9:
        md += (f"**The baseline is at chance level ({100 * (1 - 1 / classes):.0f}% top-1 for {classes} classes): "
               "the short runs did not learn, so these rows say nothing about the features.** "
               "Run with more epochs (`--epochs N`) or on real data.\n\n")
    md += ("| ablation | what | paper reduction top-1 / top-5 | ours: ablated top-1 / top-5 | baseline top-1 / top-5 "
           "| our reduction top-1 / top-5 | scale |\n|---|---|---|---|---|---|---|\n")
    for r in rows:
        paper = f"{_pct(r['paper_reduction_top1'])} / {_pct(r['paper_reduction_top5'])}"
        if r["paper_note"]:
            paper += f" ({r['paper_note']})"
        md += (f"| {r['ablation']} | {r['what']} | {paper} | {_pct(r['ours_top1'])} / {_pct(r['ours_top5'])} | "
               f"{_pct(r['baseline_top1'])} / {_pct(r['baseline_top5'])} | "
               f"{r['ours_reduction_top1'] if r['ours_reduction_top1'] is not None else '—'} / "
               f"{r['ours_reduction_top5'] if r['ours_reduction_top5'] is not None else '—'} | {r['scale']} |\n")
    fig1 = res.root / "figure1.json"
    if fig1.exists():
        f = json.loads(fig1.read_text())
        md += (f"\nFigure 1 (ReLU vs tanh, {f['net']}, on {f['data']}): epochs to 25% training error "
               f"ReLU {f['relu']['epochs_to_25']}, tanh {f['tanh']['epochs_to_25']}, ratio "
               f"{f['ratio_tanh_over_relu'] if f['ratio_tanh_over_relu'] is None else round(f['ratio_tanh_over_relu'], 2)}"
               " (paper: six times faster with ReLU on CIFAR-10).\n")
    return md, rows


def write_tables(results: str | Path, dataset: str, scale: str, is_2010: bool = False,
                 test_note: str = "this dataset has no test split") -> Path:
    res = Results(results)
    tables = res.root / "tables"
    for name, (md, rows) in {"table1": table1(res, dataset, scale, is_2010),
                             "table2": table2(res, dataset, scale, test_note),
                             "ablations": ablations(res, dataset, scale)}.items():
        _write(tables, name, md, rows)
    return tables


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reproduce.tables", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True)
    ap.add_argument("--dataset", required=True, help="name of the dataset, for the headers")
    ap.add_argument("--scale", choices=sorted(SCALES), required=True)
    ap.add_argument("--ilsvrc2010", action="store_true", help="the 1cnn evaluation is on ILSVRC-2010")
    ap.add_argument("--test-note", default="this dataset has no test split")
    args = ap.parse_args(argv)
    out = write_tables(args.results, args.dataset, args.scale, args.ilsvrc2010, args.test_note)
    print(f"tables → {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
