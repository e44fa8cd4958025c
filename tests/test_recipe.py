"""The recipe study's settings (reproduce/experiments.py, STABILITY) and its measures
(reproduce/stability.py's course, reproduce/recipe.py)."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from alexnet.config import AlexNetConfig
from alexnet.diagnostics import StepLog, kick, read_steps
from alexnet.engine import TrainOptions, fit
from alexnet.model import AlexNet
from alexnet.optim import PaperSGD, param_groups
from alexnet.schedule import PlateauSchedule, apply
from reproduce import recipe
from reproduce.experiments import (
    FC8_INPUT_SQ,
    PAPER_BATCH,
    PAPER_CLASSES,
    STABILITY,
    fc8_input_sq,
    kick_matched_bias,
)
from reproduce.stability import RECIPE, RECIPE_SETTINGS, Cell, course, outcome

from .conftest import ROOT


def test_warmup_ramps_epsilon_step_by_step_and_resumes_on_the_ramp(tiny_cache, tmp_path):
    """lr_warmup_epochs 0.5 at 4 steps an epoch: ε/2, then ε; a run stopped on the ramp and resumed
    takes the same ε at every step."""
    cfg = AlexNetConfig.from_profile("paper", num_classes=4, batch_size=4, epochs=1, lr_warmup_epochs=0.5)
    opts = dict(cache=tiny_cache, devices=("cpu", "cpu"), workers=0, progress=False, train_batches=4,
                log_steps=True)
    assert fit(cfg, TrainOptions(run_dir=tmp_path, max_steps=1, **opts)) == 0
    assert fit(cfg, TrainOptions(run_dir=tmp_path, **opts)) == 0
    lrs = [r["lr"] for r in read_steps(tmp_path / StepLog.NAME)]
    assert lrs == [0.005, 0.01, 0.01, 0.01]  # exact: the ramp's ε for step 1 of 2, then ε


def test_velocity_rescale_follows_a_division_of_epsilon_and_the_papers_rule_does_not():
    """§5 keeps ε inside the velocity: ε ÷ 10 leaves it as it was. velocity_rescale scales it by 0.1."""
    velocities = {}
    for rescale in (False, True):
        cfg = AlexNetConfig.from_profile("paper", num_classes=4, velocity_rescale=rescale)
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(3, 4))  # parameters named as param_groups reads them
        opt, schedule = PaperSGD(param_groups(net, cfg), lr=cfg.lr), PlateauSchedule(cfg.epochs)
        apply(schedule, opt, cfg, 0)
        net(torch.ones(2, 3)).square().sum().backward()
        opt.step()
        before = opt.state[net[0].weight]["velocity"].clone()
        schedule.done = 1  # ε ÷ 10
        assert apply(schedule, opt, cfg, 1)["weight"] == pytest.approx(0.001)
        velocities[rescale] = opt.state[net[0].weight]["velocity"] / before
    assert torch.allclose(velocities[False], torch.tensor(1.0))
    assert torch.allclose(velocities[True], torch.tensor(0.1))


def test_the_kick_matched_bias_puts_the_first_kick_at_imagenets():
    """At the gpu scale's 100 classes and batch 128, the bias whose ‖h‖² makes the kick ImageNet's under
    §5's values; ImageNet itself keeps §5's 1; at 10 classes and batch 32 even b = 0 kicks about as hard
    as ImageNet, so the bias is (nearly) 0; and the fit is the committed measurement's."""
    imagenet = kick(0.01, fc8_input_sq(1.0), PAPER_CLASSES, PAPER_BATCH)
    assert imagenet == pytest.approx(0.08, abs=0.005)
    b = kick_matched_bias(100, 128)
    assert 0.3 < b < 0.7
    assert kick(0.01, fc8_input_sq(b), 100, 128) == pytest.approx(imagenet, rel=0.03)
    assert kick_matched_bias(1000, 128) == 1.0 and kick_matched_bias(1000, 32) < 1.0
    # its docstring's examples: clipped to 0 at 10 (and 3) classes at batch 16; 0.01 at cpu-full's 10 at 32
    assert kick_matched_bias(10, 32) == 0.01 and kick_matched_bias(10, 16) == kick_matched_bias(3, 16) == 0.0
    measured = json.loads((ROOT / "results" / "recipe" / "fc8_input.json").read_text())["fits"]["0.5"]
    assert FC8_INPUT_SQ == (measured["a"], measured["c"], measured["h0"])


@pytest.mark.parametrize("name", list(STABILITY))
def test_each_setting_changes_what_it_names_and_nothing_else(name):
    cfg = AlexNetConfig.from_profile("paper", num_classes=100, batch_size=128)
    changed = set(STABILITY[name].apply(cfg).differences(cfg)) - {"stability"}
    setting = STABILITY[name]
    expected = ({"bias_init"} if setting.bias_init is not None else set()) \
        | ({"fc_bias_init"} if setting.fc_bias is not None else set()) \
        | ({"lr_warmup_epochs"} if setting.warmup_epochs else set()) \
        | ({"velocity_rescale"} if setting.velocity_rescale else set())  # ε per image: no change at 128
    assert changed == expected


def test_fc_only_settings_keep_the_conv_biases_of_one():
    cfg = STABILITY["fc-bias0.1"].apply(AlexNetConfig.from_profile("paper", num_classes=10, batch_size=32))
    net = AlexNet(cfg, ("cpu", "cpu"))
    layers = net.towers[0].weight_layers()
    assert {n: float(layers[n].bias[0].detach()) for n in ("conv1", "conv2", "conv5", "fc6", "fc7")} == \
        pytest.approx({"conv1": 0.0, "conv2": 1.0, "conv5": 1.0, "fc6": 0.1, "fc7": 0.1})


def test_the_recipe_study_fails_a_high_epoch_but_only_reports_a_spike():
    rows = lambda losses: [{"loss": v} for v in losses]  # noqa: E731
    spike = course(rows([2.3] * 4 + [5.0, 2.0, 1.0, 1.0]), 10, 4)  # a step above 2·ln C, epoch 2 mean 2.25
    assert spike["spike"] and not spike["high_epoch"]
    assert spike["epoch_means"] == pytest.approx([2.3, 2.25])
    high = course(rows([2.3] * 4 + [5.0] * 4), 10, 4)
    assert high["high_epoch"] and not high["spike"]
    first_only = course(rows([9.0] * 4 + [2.0] * 4), 10, 4)  # the first epoch's mean is not judged
    assert not first_only["high_epoch"]
    # the mean of the last 10 steps first reaches ½·ln 10 = 1.15 with 7 steps at 0.5 and 3 at 2.3: step 12
    assert course(rows([2.3] * 5 + [0.5] * 20), 10, 25)["steps_to_half"] == 12
    assert course(rows([2.3] * 25), 10, 25)["steps_to_half"] is None
    # the bounds, from the code: ½·ln 10 = 1.1513 and 2·ln 10 = 4.6052; at 100 classes 2.3026 and 9.2103
    for classes, half, high in ((10, 1.1513, 4.6052), (100, 2.3026, 9.2103)):
        assert course(rows([half - 1e-4] * 10), classes, 10)["steps_to_half"] == 10
        assert course(rows([half + 1e-4] * 10), classes, 10)["steps_to_half"] is None
        assert not course(rows([2.0] * 4 + [high - 1e-4] * 4), classes, 4)["high_epoch"]
        assert course(rows([2.0] * 4 + [high + 1e-4] * 4), classes, 4)["high_epoch"]


def test_the_recipe_grid_has_every_candidate_at_both_scales():
    assert set(RECIPE_SETTINGS) == {*STABILITY, ""} - {"velocity-rescale"}
    assert {(c.setting, c.classes) for c in RECIPE} == {(s, n) for s in RECIPE_SETTINGS for n in (10, 100)}
    assert recipe.label("") == "paper (§5's values)"


def test_runs_count_for_every_setting_that_trains_the_same_and_carry_over_by_what_they_train(tmp_path):
    """At batch 128 `per-image-lr-bias0.1` is `bias0.1` (ε × 128/128): one set of runs answers both, once
    per seed. An earlier study's cell of ε 0.01 and bias 0.1 (no setting's name) trains it too, so its
    runs carry over; one of another step count or bias does not."""
    gpu = {"classes": 100, "per_class": 80, "batch": 128, "steps": 124}
    old = [Cell(**gpu, lr=0.01, bias_init=0.1, dropout=p, pool_kernel=k, seeds=(0,))
           for p, k in ((0.5, 3), (0.0, 3), (0.5, 2))]
    other = [Cell(**{**gpu, "steps": 40}, seeds=(0,)), Cell(**gpu, bias_init=0.5, seeds=(0,))]
    losses = [{"loss": 4.6, "fc8_input_sq": 1.0}] * 124
    runs = [{"cell": c.name, "seed": 0, "steps": losses[:c.steps], "seconds": 1.0,
             **outcome(losses[:c.steps], c.classes)} for c in [*old, *other]]
    study = tmp_path / "fragile.json"
    study.write_text(json.dumps({"date": "2026-12-03", "runs": runs,
                                 "grid": [{**asdict(c), "seeds": list(c.seeds)} for c in [*old, *other]]}))
    filed = recipe.carry_over(study, tmp_path)
    assert len(filed) == 3 and all("-b128-bias0.1-" in f for f in filed)
    assert recipe.carry_over(study, tmp_path) == []  # already there
    stored = json.loads((tmp_path / "recipe.json").read_text())["runs"]
    assert {r["steps_per_epoch"] for r in stored} == {62} and all(r["epoch_means"] for r in stored)
    both = [recipe.first_epochs(stored, gpu, s) for s in ("bias0.1", "per-image-lr-bias0.1")]
    assert [(a["runs"], a["of"]) for a in both] == [(3, 9), (3, 9)]
    assert both[0]["shared_with"] == [] and both[1]["shared_with"] == ["bias0.1"]
    assert recipe.first_epochs(stored, gpu, "fc-bias0.1") is None
    assert recipe.first_epochs(stored, {**gpu, "classes": 10, "per_class": 120, "batch": 32, "steps": 74},
                               "per-image-lr-bias0.1") is None  # ε × 32/128 at batch 32: not bias0.1


def test_figure3_over_seeds_reads_every_kept_run_of_1cnns_configuration(tmp_path, monkeypatch):
    """Criterion (c) over seeds: 1 CNN (seed 0; from Figure 3's own file in a folder made before runs
    kept their conv1) and the 5 CNNs' members, from the setting's main folder and the study's own; a
    grating meets Figure 3's target, white noise does not."""
    import numpy as np

    from reproduce.figures import kernel_statistics, write_npy
    y, x = np.mgrid[0:11, 0:11]
    grating = np.broadcast_to(np.cos(2 * np.pi * (x + 0.3 * y) / 8), (48, 3, 11, 11)).astype(np.float32)
    noise = np.random.default_rng(0).standard_normal((48, 3, 11, 11)).astype(np.float32)
    main, own = tmp_path / "main", tmp_path / "recipe" / "cpu-full-bias0.1"
    for folder in (main / "figures", own / "conv1", own / "logs"):
        folder.mkdir(parents=True)
    write_npy(main / "figures" / "conv1_kernels.npy", grating)
    write_npy(own / "conv1" / "5cnns-seed2.npy", noise)
    write_npy(own / "conv1" / "5cnns-seed1.npy", grating)
    epochs = [{"epoch": 1, "train_loss": 2.3, "val_top1": 0.5},
              {"epoch": 2, "train_loss": 1.1, "val_top1": 0.125}]
    (own / "logs" / "5cnns-seed1.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    monkeypatch.setattr(recipe, "main_folder", lambda setting: main if setting == "bias0.1" else tmp_path)
    monkeypatch.setattr(recipe, "OUT", tmp_path / "recipe")
    s = recipe.seeds("bias0.1")
    assert [(r["seed"], r["figure3"], r["val_top1"], r["epoch_to_half"]) for r in s["runs"].values()] == [
        (0, True, None, None), (1, True, 12.5, 2), (2, False, None, None)]  # ½·ln 10 = 1.15
    assert s["met"] == 2 and s["low_frequency"][1] > 0.1
    noise_score = kernel_statistics(noise)["orientedness"].mean()
    assert s["runs"]["5cnns-seed2"]["orientedness"] == pytest.approx(noise_score)
    assert recipe.seeds("fc-bias0.1") is None  # nothing kept for it


@pytest.mark.parametrize("paper", ["", None, "paper"])
def test_the_folders_of_section_5s_values_are_named_paper(paper, monkeypatch, tmp_path):
    """With no full regeneration in place, main_folder falls back to the study's own folder, named as
    seeds() names it: cpu-full-paper for §5's values (it was cpu-full- or cpu-full-None)."""
    monkeypatch.chdir(tmp_path)  # no committed results/ here
    assert recipe.main_folder(paper) == recipe.study_folder(paper) == recipe.OUT / "cpu-full-paper"


def test_each_settings_1cnn_is_read_where_it_is_committed(monkeypatch):
    """A setting whose study run was superseded from results/history/ (the study's choice, §5's values,
    the earlier setting); a candidate from the study's own folder."""
    monkeypatch.chdir(ROOT)
    assert recipe.main_folder("fc-bias-kick-matched") == \
        Path("results/history/synthetic-cpu-full-fc-bias-kick-matched")
    assert recipe.main_folder("") == Path("results/history/synthetic-cpu-full-paper")
    assert recipe.main_folder("per-image-lr-bias0.1") == \
        Path("results/history/synthetic-cpu-full-per-image-lr-bias0.1")
    assert recipe.main_folder("warmup1") == Path("results/recipe/cpu-full-warmup1")


def test_the_criteria_table_is_made_from_the_committed_study(monkeypatch, tmp_path):
    """`python -m reproduce.recipe table` reads the study's choice's replicates from where they are
    committed, as they were made (14 epochs, generator 2). Before: it asked today's cpu-full tables for
    them, which since generator 4 call those runs stale, and it crashed on a missing band."""
    import shutil
    monkeypatch.chdir(ROOT)
    shutil.copy(ROOT / "results" / "recipe" / "recipe.json", tmp_path / "recipe.json")
    got = recipe.table(tmp_path)
    assert got["band"]["folder"] == "results/history/synthetic-cpu-full-fc-bias-kick-matched"
    assert (got["band"]["n"], got["band"]["mean"], got["band"]["sd"]) == (6, 10.92, 3.8)
    made, committed = ((folder / "criteria.md").read_text().splitlines()
                       for folder in (tmp_path, ROOT / "results" / "recipe"))
    assert [line for line in made if not line.startswith("Made by")] == \
        [line for line in committed if not line.startswith("Made by")]
