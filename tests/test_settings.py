"""One rule for stability settings, dependencies and diverged jobs (reproduce/experiments.py's
choose_stability; run_all's job paths): each test here failed on the code before that rule."""

import json
import re
import shlex
from pathlib import Path

import pytest
import torch

from alexnet.model import AlexNet
from reproduce import experiments
from reproduce import run_all as run_all_module
from reproduce.experiments import (
    EXPERIMENTS,
    PAIRED,
    SCALES,
    SMALL_DATA,
    STABLE,
    Override,
    choose_stability,
    run_config,
)
from reproduce.figures import one_setting, training_curves
from reproduce.tables import Results, stopped_records, stopped_runs, write_tables

from .conftest import ROOT, colour_folder
from .test_reproduce import diverging, fake_eval, run_all, today


def test_one_rule_chooses_the_setting_from_classes_batch_and_scale():
    """The scales that declare a setting have it; on other data the class mix at the batch decides:
    ILSVRC at the paper's batch 128 keeps §5's values, at batch 32 (a kick twice ImageNet's at 128)
    it does not, nor does a 200-class set at 32; --stability wins over both."""
    assert choose_stability(10, 32, "cpu-full", None)[0] == ""  # §5's, on generator 4 (PAPER.md)
    assert choose_stability(100, 128, "gpu", None)[0] == STABLE
    assert choose_stability(10, 32, "cpu", None)[0] == ""
    on_data = {(c, b): choose_stability(c, b, "imagenet", None) for c, b in
               ((1000, 128), (1000, 64), (1000, 32), (200, 32), (3, 16))}
    assert {k: name for k, (name, _) in on_data.items()} == {
        (1000, 128): "", (1000, 64): "", (1000, 32): SMALL_DATA, (200, 32): SMALL_DATA, (3, 16): SMALL_DATA}
    assert "2.0× ImageNet's at batch 128" in on_data[1000, 32][1]
    assert choose_stability(3, 16, "imagenet", "paper") == ("", "--stability paper")
    assert choose_stability(1000, 128, "imagenet", STABLE)[0] == STABLE
    with pytest.raises(ValueError, match="unknown stability setting"):
        choose_stability(10, 32, "cpu", "calm")
    assert not hasattr(experiments, "FEW_CLASSES_STABILITY")  # one name for the one setting


def plan_of(command: str, work: Path):
    """run_all's Plan for a documented `bash reproduce/run_all.sh ...` command (nothing is written)."""
    _, args = run_all_module.parse_args(shlex.split(command)[2:] + ["--work", str(work)])
    return run_all_module.make_plan(args)


def test_a_setting_other_than_the_default_has_its_own_results_folder(tmp_path):
    """A setting other than the scale's writes apart (--stability fc-bias-kick-matched at cpu-full, whose
    default is §5's values since generator 4); the default asked for by name writes where the default does."""
    default = plan_of("bash reproduce/run_all.sh --scale cpu-full", tmp_path)
    kick = plan_of(f"bash reproduce/run_all.sh --scale cpu-full --stability {SMALL_DATA}", tmp_path)
    assert default.results.name == "synthetic-cpu-full"
    assert kick.results.name == f"synthetic-cpu-full-{SMALL_DATA}"
    paper = plan_of("bash reproduce/run_all.sh --scale cpu-full --stability paper", tmp_path)
    assert paper.results == default.results  # the default, asked for by name: the same folder
    assert plan_of("bash reproduce/run_all.sh --stability per-image-lr-bias0.1", tmp_path).results.name == \
        "synthetic-per-image-lr-bias0.1"
    assert kick.override.stability == SMALL_DATA and default.override.stability == "paper"


def test_the_dry_run_names_the_results_folder(tmp_path, capsys):
    """`run_all.sh --scale cpu-full --stability bias0.1 --dry-run` says where it would write."""
    assert run_all_module.main(["--scale", "cpu-full", "--stability", "bias0.1", "--dry-run",
                                "--work", str(tmp_path)]) == 0
    assert "  results: results/synthetic-cpu-full-bias0.1 (tables, figures)" in capsys.readouterr().out


@pytest.mark.parametrize("folder", ["synthetic", "synthetic-cpu-full",
                                    "history/synthetic-cpu-full-fc-bias-kick-matched",
                                    "history/synthetic-cpu-full-paper",
                                    "history/synthetic-cpu-full-per-image-lr-bias0.1",
                                    "history/synthetic-gpu-scale-cpu"])
def test_each_committed_folders_readme_regenerates_it_in_place(folder, tmp_path):
    readme = (ROOT / "results" / folder / "README.md").read_text()
    command = re.search(r"Regenerate[^`]*`(bash reproduce/run_all\.sh[^`]*)`", readme.replace("\n  ", " "))
    assert command, f"{folder}/README.md gives no Regenerate command"
    results = plan_of(command.group(1), tmp_path).results  # a relative --results: from the repository
    results = results if results.is_absolute() else ROOT / results
    assert results == ROOT / "results" / folder, command.group(1)


def test_the_tables_choose_the_setting_as_run_all_does(tmp_path):
    """`python -m reproduce.tables` on a run_all --data folder of 3 classes at batch 16: its runs
    trained under the setting by default, and the tables, given no --stability either, take them
    for today's runs and say which setting and why (before: every row 'not a result of this code')."""
    fake_eval(tmp_path, "1cnn", 0.0, classes=3, members={"1cnn": 0.0}, scale="imagenet",
              configs={"1cnn": today("1cnn", "imagenet", 3, Override(batch_size=16))})
    write_tables(tmp_path, "my photos", "imagenet", override=Override(epochs=90, batch_size=16))
    row = json.loads((tmp_path / "tables" / "table2.json").read_text())[1]
    assert row["ours_top1_val"] == 0.0, row["note"]
    md = (tmp_path / "tables" / "table2.md").read_text()
    assert f"stability setting `{SMALL_DATA}`" in md and "3 classes at batch 16" in md
    paper = Override(epochs=90, batch_size=16, stability="paper")
    write_tables(tmp_path, "my photos", "imagenet", override=paper)
    row = json.loads((tmp_path / "tables" / "table2.json").read_text())[1]
    assert row["ours_top1_val"] is None and f"stability '{SMALL_DATA}' (now '')" in row["note"]


def test_an_evaluation_that_records_no_config_is_no_result(tmp_path):
    fake_eval(tmp_path, "no-lrn", 0.3, members={"no-lrn": 0.3}, configs={})
    res = Results(tmp_path, "cpu-full")
    assert "records no config" in res.verdict(experiments.EVALUATIONS["no-lrn"]).why


def test_stopped_runs_are_read_per_setting(tmp_path):
    (tmp_path / "stopped.json").write_text(json.dumps({
        "a": {"why": "loss is nan", "stability": "paper"}, "b": {"why": "loss is inf", "stability": STABLE},
        "c": "recorded before settings were"}))
    assert stopped_runs(tmp_path, "paper") == {"a": "loss is nan", "c": "recorded before settings were"}
    assert set(stopped_runs(tmp_path, STABLE)) == {"b", "c"}
    assert set(stopped_runs(tmp_path)) == {"a", "b", "c"}


def test_two_settings_sharing_a_results_folder_keep_their_own_stop_records(tmp_path):
    """Plans of two settings writing to one --results: each records, reads and clears its own stops
    (the records were keyed by run name alone: B's record replaced A's, and B's clearing erased both)."""
    from types import SimpleNamespace

    from reproduce.run_all import Plan

    def plan(setting):
        return SimpleNamespace(results=tmp_path, shared=dict, override=SimpleNamespace(stability=setting))
    a, b = plan("paper"), plan(STABLE)
    Plan.record_stopped(a, "no-lrn", "loss is nan")
    Plan.record_stopped(b, "no-lrn", "loss is inf")
    assert stopped_runs(tmp_path, "paper") == {"no-lrn": "loss is nan"}
    assert stopped_runs(tmp_path, STABLE) == {"no-lrn": "loss is inf"}
    Plan.record_stopped(b, "no-lrn", None)
    assert stopped_runs(tmp_path, "paper") == {"no-lrn": "loss is nan"}
    assert stopped_runs(tmp_path, STABLE) == {}
    Plan.record_stopped(a, "no-lrn", None)
    assert not (tmp_path / "stopped.json").exists()


def test_training_curves_draw_one_setting_only(tmp_path, capsys):
    line = lambda s: {"epoch": 1, "train_top1": 0.5, "val_top1": 0.5, "lr": {"weight": 0.01}, "stability": s}  # noqa: E731
    logs = {"1cnn": [line("")], "no-lrn": [line(STABLE)], "pool-z2": [{**line(""), "stability": None}]}
    with pytest.raises(ValueError, match="2 stability settings"):
        one_setting(logs, None)
    kept, name, out = one_setting(logs, "paper")
    assert set(kept) == {"1cnn", "pool-z2"} and name == "paper" and out == {"no-lrn": STABLE}
    training_curves(logs, tmp_path / "curves.png", stability="paper")
    assert "left out no-lrn, trained under stability setting per-image-lr-bias0.1" in capsys.readouterr().out


def test_the_ablations_panel_gives_each_ablation_one_colour_and_each_seed_one_line_style():
    """With the paired seeds the panel has 28 lines: on the default 10-colour cycle, different
    ablations shared colours. Here an ablation's seeds share a colour (tab10's, one hue each, for 10
    ablations: not tab20's dark and light pairs; black for its grey) and differ in line style and marker."""
    import matplotlib.pyplot as plt

    from reproduce.figures import _ablation_styles
    names = [n for a in PAIRED for n in (a, f"{a}-seed1", f"{a}-seed2")] + ["cuda-convnet"]
    style = _ablation_styles(names)
    families = (*PAIRED, "cuda-convnet")
    tab10 = [plt.get_cmap("tab10")(k) for k in range(10)]
    tab10[7] = "k"  # its grey is the baseline replicates' in the panel
    assert len(families) == 10 and [style[a]["color"] for a in families] == tab10
    for a in PAIRED:
        assert style[a]["color"] == style[f"{a}-seed1"]["color"] == style[f"{a}-seed2"]["color"]
        seeds = [(style[n]["ls"], style[n]["marker"]) for n in (a, f"{a}-seed1", f"{a}-seed2")]
        assert seeds == [("-", "o"), ("--", "s"), (":", "^")]
    many = [f"x{k}" for k in range(12)]  # beyond 10: tab20, every dark shade before any light one
    assert len({s["color"] for s in _ablation_styles(many).values()}) == 12
    assert _ablation_styles(many)["x10"]["color"] == plt.get_cmap("tab20")(1)


def test_the_gpu_sessions_probes_train_as_the_gpu_scale_does(capsys):
    """tools/gpu_session.sh's probes take each run's config from reproduce.experiments, which applies
    the gpu scale's setting (they probed §5's values, which that scale no longer uses)."""
    assert experiments.main(["--scale", "gpu", "--classes", "100", "--run", "no-dropout"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["bias_init"], cfg["stability"], cfg["dropout"], cfg["epochs"]) == (0.1, STABLE, 0.0, 20)
    script = (ROOT / "tools" / "gpu_session.sh").read_text()
    assert "-m reproduce.experiments --scale gpu --classes 100 --run" in script
    assert "--dropout 0" not in script


def test_1cnn_stars_conv6_starts_at_the_settings_bias():
    star = next(r for r in EXPERIMENTS["1cnn-star"].runs if r.init_from)
    cfg = run_config(star, SCALES["gpu"].size("main"), 100)
    assert (cfg.bias_init, cfg.conv6_init_bias, cfg.stability) == (0.1, 0.1, STABLE)
    torch.manual_seed(0)
    net = AlexNet(cfg, "cpu")
    assert all(torch.all(t.conv6.bias == 0.1) for t in net.towers if t.conv6 is not None)
    paper = run_config(star, SCALES["cpu"].size("main"), 10)
    assert (paper.conv6_init_bias, paper.stability) == (1.0, "")


@pytest.mark.parametrize("jobs, runs", [(("--nproc", "2", "--devices", "cpu"), "1cnn"),
                                        pytest.param(("--devices", "cpu", "--devices", "cpu"), "no-lrn",
                                                     marks=pytest.mark.slow)],  # about 30 s
                         ids=["torchrun", "concurrent-pairs"])
def test_a_diverged_job_is_known_by_its_run_directory(jobs, runs, tmp_path, capsys, monkeypatch):
    """A real job whose loss goes non-finite: a torchrun job (which exits 1, not 3) or one of two
    concurrent jobs. It is recorded as stopped, from its nonfinite.json, and run_all goes on; of two
    concurrent jobs the other run trains and is evaluated."""
    diverging(monkeypatch, runs)
    code, out, err = run_all(tmp_path, capsys, "--experiments", runs, *jobs)
    assert code == 0, out[-3000:] + err[-3000:]
    res = tmp_path / "results"
    why = "loss is nan at epoch 1, step 1"
    assert stopped_records(res) == [{"run": runs, "stability": "paper", "why": why}]
    assert not (res / "eval" / f"{runs}.json").exists()
    if runs == "no-lrn":
        assert (res / "eval" / "baseline-short.json").exists()


def test_a_jobs_log_keeps_every_attempt(tmp_path):
    """<run-dir>.log is appended to: a retry keeps the output that a stop record points to."""
    for attempt in ("first", "second"):
        with run_all_module.open_log(tmp_path / "runs" / "no-lrn", ["train", attempt]) as log:
            log.write(f"{attempt} attempt's output\n")
    text = (tmp_path / "runs" / "no-lrn.log").read_text()
    assert text.count("\n== ") == 2 and "first attempt's output" in text and "second attempt's output" in text


@pytest.mark.parametrize("jobs", [(), pytest.param(("--devices", "cpu", "--devices", "cpu"),
                                                   marks=pytest.mark.slow)],  # concurrent: about 45 s
                         ids=["in-turn", "concurrent-pairs"])
def test_a_run_fine_tuned_from_a_stopped_pre_training_is_not_trained(jobs, tmp_path, capsys, monkeypatch):
    """1 CNN*: its pre-training stops; the fine-tuning from it is neither trained (from a half-trained
    net) nor tabled, and says why; the other pre-training and its fine-tuning go on."""
    pretrain = colour_folder(tmp_path / "fall2011")
    diverging(monkeypatch, "1cnn-star-pretrain")
    code, out, err = run_all(tmp_path, capsys, "--experiments", "1cnn-star", "--pretrain-data", str(pretrain),
                             *jobs)
    assert code == 0, out[-3000:] + err[-3000:]
    assert stopped_runs(tmp_path / "results", "paper") == {
        "1cnn-star-pretrain": "loss is nan at epoch 1, step 1",
        "1cnn-star": "not trained: 1cnn-star-pretrain, its pre-training, stopped"}
    runs = next((tmp_path / "work" / "runs").glob("*/e1-b4-t2"))
    assert not list((runs / "1cnn-star").glob("ckpt-*")) and list((runs / "1cnn-star-seed1").glob("ckpt-*"))
    t2 = {r["model"]: r for r in json.loads((tmp_path / "results" / "tables" / "table2.json").read_text())}
    assert "not trained: 1cnn-star-pretrain" in t2["1 CNN*"]["note"]
    # not evaluated, for the reason it was not trained: it did not stop on a non-finite loss itself
    said = [line for line in out.splitlines() if line.startswith("not evaluated: 1cnn-star ")]
    assert said == ["not evaluated: 1cnn-star (1cnn-star: not trained: 1cnn-star-pretrain, its pre-training, "
                    "stopped)"], said


def test_the_flag_table_is_checked_by_a_raise_not_an_assert(monkeypatch):
    """alexnet.train refuses to import with a TrainOptions field that has no flag, by a raise that
    `python -O` keeps (an assert there was dropped)."""
    import dataclasses
    import importlib

    import alexnet.engine
    import alexnet.train
    grown = dataclasses.make_dataclass("T", [("new_option", int, 0)], bases=(alexnet.engine.TrainOptions,),
                                       frozen=True)
    monkeypatch.setattr(alexnet.engine, "TrainOptions", grown)
    with pytest.raises(ImportError, match=r"TrainOptions fields without a flag: \['new_option'\]"):
        importlib.reload(alexnet.train)
    monkeypatch.undo()
    importlib.reload(alexnet.train)
