"""What users do with a trained model: predict, export, torch.hub, the familiar
flags, and the setup script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet import checkpoint, engine, predict, train
from alexnet.config import AlexNetConfig
from alexnet.data.cache import Cache
from alexnet.data.loader import Loader
from alexnet.model import AlexNet
from tools import bench, export

from .conftest import ROOT, train_argv
from .test_reliability import _RunsCode, exit_status


@pytest.fixture(scope="session")
def trained(tiny_cache, tmp_path_factory) -> Path:
    """A run of this version (its checkpoint holds the mean image and class names): 1 step."""
    d = tmp_path_factory.mktemp("trained") / "run"
    assert train.main(train_argv(tiny_cache, d, "--epochs", "1", "--train-batches", "1", "--keep", "1")) == 0
    return d


@pytest.fixture()
def images(tmp_path) -> dict[str, Path]:
    """A PNG, a CMYK JPEG and a grayscale JPEG of odd sizes, and a file that is no image."""
    rng = np.random.default_rng(0)
    out = {"png": tmp_path / "wide.png", "cmyk": tmp_path / "cmyk.jpg", "gray": tmp_path / "gray.jpg",
           "bad": tmp_path / "broken.jpg"}
    Image.fromarray(rng.integers(0, 255, (300, 500, 3), dtype=np.uint8)).save(out["png"])
    Image.fromarray(rng.integers(0, 255, (400, 240, 4), dtype=np.uint8), "CMYK").save(out["cmyk"])
    Image.fromarray(rng.integers(0, 255, (100, 130), dtype=np.uint8), "L").save(out["gray"])
    out["bad"].write_bytes(b"not an image at all")
    return out


# ---------- predict ----------

def test_predict_reads_any_mode_names_the_unreadable_and_prints_the_top5(trained, images, capsys):
    names = [str(images[k]) for k in ("png", "cmyk", "gray", "bad")]
    assert predict.main(["--checkpoint", str(trained), "--json", *names]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["image"] for r in lines] == names[:3]
    classes = Cache(Path(json.loads((trained / "config.json").read_text())["cache"])).classes
    for r in lines:
        k = min(5, len(classes))  # the tiny set has 4 classes
        assert [t["rank"] for t in r["top"]] == list(range(1, k + 1))
        assert all(t["wnid"] == classes[t["index"]]["wnid"] and t["name"] == classes[t["index"]]["words"]
                   for t in r["top"])
        probs = [t["probability"] for t in r["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert "broken.jpg: skipped" in err
    assert predict.main(["--checkpoint", str(trained), "--views", "ten", str(images["png"])]) == 0
    assert "1. " in capsys.readouterr().out
    assert predict.main(["--checkpoint", str(trained), str(images["bad"])]) == 1  # nothing could be read


@pytest.mark.parametrize("views", ["center", pytest.param("ten", marks=pytest.mark.slow)])
def test_predict_is_the_evaluation_path_on_a_validation_image(trained, tiny_cache, tmp_path, views):
    """An image file of the cache through predict gives the softmax that evaluation gives it."""
    cache = Cache(tiny_cache)
    model, ck, path = engine.load_model(trained, devices=("cpu", "cpu"))
    loader = Loader(cache, "val", model.config, train=False, views=views, batch_size=4, workers=0)
    want, _ = engine.predict(model, loader)
    f = tmp_path / "val0.jpg"
    f.write_bytes(cache.read("val", 0))
    mean, _ = predict.dataset_of(ck, path)
    got = predict.classify(model, mean, predict.read_image(f)[None], views)
    assert torch.allclose(got[0], want[0], rtol=0, atol=1e-6)
    # another image differs (by ~1e-4 after two steps of training): the comparison can fail
    assert not torch.allclose(got[0], want[1], rtol=0, atol=1e-6)


# ---------- export ----------

def test_grouped_export_loads_without_this_package(trained, tmp_path):
    out = tmp_path / "grouped"
    info = export.export(trained, "grouped", out)
    assert info["max_logit_difference"] <= export.TOLERANCE
    assert {p.name for p in out.iterdir()} == {"grouped.py", "config.json", "weights.pt", "mean.npy",
                                               "classes.json", "export.json"}
    model, _, _ = engine.load_model(trained, devices=("cpu", "cpu"))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1)) * 60
    with torch.no_grad():
        np.save(tmp_path / "x.npy", x.numpy())
        want = model(x).numpy()
    # importing alexnet would fail
    script = ("import sys, json, numpy, torch; sys.modules['alexnet'] = None\n"
              "from grouped import GroupedAlexNet\n"
              "net = GroupedAlexNet(**json.load(open('config.json')))\n"
              "net.load_state_dict(torch.load('weights.pt', weights_only=True)); net.eval()\n"
              f"x = torch.from_numpy(numpy.load({str(tmp_path / 'x.npy')!r}))\n"
              "with torch.no_grad(): print(json.dumps(net(x).tolist()))\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=out, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ""})
    assert r.returncode == 0, r.stderr
    assert np.abs(np.array(json.loads(r.stdout)) - want).max() <= 1e-4
    assert np.load(out / "mean.npy").shape == (3, 256, 256)
    assert len(json.loads((out / "classes.json").read_text())) == model.config.num_classes


@pytest.mark.parametrize("overrides", [
    {"profile": "cuda-convnet", "crop_size": 227},  # LRN before ReLU in conv1, the 5×5 same-map norm, α/n
    {"towers": 1, "lrn": False, "pool_kernel": 2}, {"extra_conv6": True},
])
def test_grouped_module_computes_the_two_tower_function(overrides):
    cfg = AlexNetConfig.from_profile(overrides.pop("profile", "paper"), num_classes=10, **overrides)
    torch.manual_seed(0)
    model = AlexNet(cfg, devices=("cpu", "cpu")).eval()
    with torch.no_grad():
        for t in model.towers:  # logits well away from zero: the comparison means something
            t.fc7.weight.mul_(30)
    net, _ = export.to_grouped(model)
    x = torch.randn(2, 3, cfg.crop_size, cfg.crop_size, generator=torch.Generator().manual_seed(2)) * 60
    assert export.max_difference(model, net, x) <= export.TOLERANCE
    with torch.no_grad():
        net.fc8.weight.div_(1 - cfg.dropout)  # without the test-time dropout scaling folded in
    assert export.max_difference(model, net, x) > export.TOLERANCE


def test_torchscript_export_round_trips(trained, tmp_path):
    info = export.export(trained, "torchscript", tmp_path / "ts")
    assert info["checked_by"].startswith("torch.jit.load")
    assert info["max_logit_difference"] <= export.TOLERANCE


@pytest.mark.slow  # the dynamo ONNX exporter: about 10 s; CI keeps the grouped and TorchScript checks
def test_onnx_export_round_trips_through_onnxruntime(trained, tmp_path):
    pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime (pip install -e '.[test]')")
    pytest.importorskip("onnxscript", reason="torch.onnx.export needs onnxscript (pip install -e '.[test]')")
    info = export.export(trained, "onnx", tmp_path / "onnx")
    assert info["checked_by"].startswith("onnxruntime") and info["max_logit_difference"] <= export.TOLERANCE
    assert (tmp_path / "onnx" / "alexnet.onnx").exists()


# ---------- torch.hub ----------

def test_hub_entry_loads_a_local_checkpoint(trained):
    model = torch.hub.load(str(ROOT),
                           "alexnet_towers", source="local", checkpoint=str(trained), devices="cpu")
    _, ck = checkpoint.read(trained)
    assert not model.training and all(torch.equal(v, ck["model"][k]) for k, v in model.state_dict().items())
    # load_model keeps neither the weights (now the model's) nor the optimizer's state beside the model
    _, rest, _ = engine.load_model(trained, devices=("cpu", "cpu"))
    assert "model" not in rest and "optimizer" not in rest and rest["config"] == ck["config"]
    assert model.mean.shape == (3, 256, 256) and len(model.classes) == model.config.num_classes
    fresh = torch.hub.load(str(ROOT), "alexnet_towers", source="local", num_classes=7, devices="cpu")
    assert fresh.fc8.out_features == 7


def test_predict_export_and_hub_refuse_a_crafted_checkpoint(tmp_path, images, capsys):
    marker = tmp_path / "pwned"
    bad = tmp_path / "ckpt-e0001-s000000001.pt"
    torch.save({"model": {}, "config": {}, "payload": _RunsCode(marker)}, bad)
    assert exit_status(predict.main, ["--checkpoint", str(bad), str(images["png"])]) == 2
    assert "refused" in capsys.readouterr().err
    assert exit_status(export.main, ["--checkpoint", str(bad), "--to", "grouped", str(tmp_path / "out")]) == 2
    assert "refused" in capsys.readouterr().err and not (tmp_path / "out").exists()
    from alexnet.checkpoint import UnsafeCheckpoint
    with pytest.raises(UnsafeCheckpoint, match="refused"):
        torch.hub.load(str(ROOT), "alexnet_towers", source="local", checkpoint=str(bad))
    assert not marker.exists()  # (test_reliability shows the same object does create it when unpickled)


# ---------- familiar flags ----------

def test_familiar_flag_spellings_are_aliases(tmp_path):
    common = ["--cache", "c", "--epochs", "1"]
    _, old = train.parse_args([*common, "--run-dir", "r", "--batch-size", "8", "--workers", "0",
                               "--weight-decay", "0.001", "--momentum", "0.8", "--print-freq", "5"])
    _, new = train.parse_args([*common, "--output-dir", "r", "-b", "8", "-j", "0", "--wd", "0.001",
                               "--momentum", "0.8", "-p", "5"])
    assert vars(old) == vars(new)
    assert (new.run_dir, new.batch_size, new.workers, new.weight_decay, new.momentum, new.print_freq) == \
        ("r", 8, 0, 0.001, 0.8, 5)
    assert train.config_from_args(new, 10).weight_decay == 0.001
    spellings = (["--batch", "4"], ["--batch-size", "4"], ["-b", "4"])
    assert [bench.parser().parse_args(s).batch for s in spellings] == [4, 4, 4]
    assert exit_status(train.main, [*common, "--run-dir", str(tmp_path / "x"), "--wd", "-1"]) == 2


def test_the_fixed_step_schedule_is_reachable_from_the_command_line():
    """cpu-full's runs train under lr_schedule "step" (reproduce/experiments.py, FIXED_SCHEDULES); a user
    retraining one with python -m alexnet.train must be able to name it, and its epochs."""
    common = ["--cache", "c", "--run-dir", "r", "--lr-schedule", "step"]
    cfg = train.config_from_args(train.parse_args([*common, "--lr-step-epochs", "10", "12"])[1], 10)
    assert (cfg.lr_schedule, cfg.lr_step_epochs) == ("step", (10, 12))
    with pytest.raises(ValueError, match="--lr-step-epochs"):  # step without its epochs: say what is missing
        train.config_from_args(train.parse_args(common)[1], 10)


def test_loader_flags_reach_the_trainer_options():
    common = ["--cache", "c", "--run-dir", "r"]
    chosen = {flag: train.options_from_args(*train.parse_args([*common, *flag]), None).resident
              for flag in ((), ("--resident", "on"), ("--resident", "off"))}
    assert chosen == {(): None, ("--resident", "on"): True, ("--resident", "off"): False}
    assert train.options_from_args(*train.parse_args([*common, "--decoder", "gpu"]), None).decoder == "gpu"


@pytest.mark.slow  # three small trainings: about 10 s (CI time)
def test_resume_from_a_given_checkpoint_and_print_freq(tiny_cache, tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    args = ("--epochs", "1", "--train-batches", "3", "--keep", "1")
    assert train.main(train_argv(tiny_cache, first, *args, "--max-steps", "1")) == 0
    assert train.main(train_argv(tiny_cache, second, *args, "--resume", str(first), "-p", "1")) == 0
    err = capsys.readouterr().err
    # stderr is not a terminal
    assert f"resumed from {first}" in err and "step 2:" in err and "step 3:" in err
    log = json.loads((second / "log.jsonl").read_text().splitlines()[-1])
    assert log["epoch"] == 1
    assert json.loads((second / "config.json").read_text())["resumed_from"].startswith(str(first))
    assert (second / "conv1_init.npy").read_bytes() == (first / "conv1_init.npy").read_bytes()
    # rerunning the same command continues from second's own, newer checkpoint
    assert train.main(train_argv(tiny_cache, second, *args, "--resume", str(first))) == 0
    assert "ignored" in capsys.readouterr().err


# ---------- setup ----------

def _env_sh(python: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", 'source tools/env.sh && echo "PY=$PY"'], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHON": python})


def test_env_sh_refuses_an_old_python(tmp_path):
    stub = tmp_path / "python3.8"  # answers like Python 3.8.10 would
    stub.write_text('#!/bin/sh\ncase "$2" in *"version_info <"*) exit 1;; *) echo 3.8.10;; esac\n')
    stub.chmod(0o755)
    r = _env_sh(str(stub))
    assert r.returncode == 2 and "PY=" not in r.stdout
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]  # one line
    assert "Python 3.8.10" in r.stderr and "3.10 or newer" in r.stderr and "install Python 3.11" in r.stderr


@pytest.mark.slow  # two full imports of torch and the rest: 10–20 s
def test_env_sh_warns_of_a_chosen_python_with_another_torch(tmp_path):
    """PYTHON= where everything imports, but torch reports another version (a GPU
    machine's own build, say): used as asked, with a warning naming both versions."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text('import torch\ntorch.__version__ = "2.0.0"\n')
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    r = _env_sh(str(wrapper))
    assert r.returncode == 0 and f"PY={wrapper}" in r.stdout
    pinned = re.search(r'"(torch==[^"]+)"', (ROOT / "pyproject.toml").read_text())[1]
    assert "warning" in r.stderr and "torch 2.0.0" in r.stderr and pinned in r.stderr
    assert "using it as asked" in r.stderr


# ---------- 1 CNN*: pre-train, then fine-tune from it ----------

@pytest.mark.slow  # two conv6 trainings: about 20 s (CI time); CI keeps the crafted-file refusal below
def test_init_from_starts_a_fine_tuning_run_from_every_layer_but_fc8(tiny_cache, tmp_path, capsys):
    pre, fine = tmp_path / "pre", tmp_path / "fine"
    common = ("--epochs", "1", "--train-batches", "1", "--keep", "1", "--extra-conv6")
    assert train.main(train_argv(tiny_cache, pre, *common)) == 0
    assert train.main(train_argv(tiny_cache, fine, *common,
                                 "--init-from", str(pre), "--lr-schedule", "finetune",
                                 "--seed", "5")) == 0
    assert "every layer but fc8" in capsys.readouterr().err
    _, p = checkpoint_of(pre)
    assert json.loads((fine / "config.json").read_text())["init_from"].startswith(str(pre))
    model = AlexNet(AlexNetConfig.from_dict(p["config"]), devices="cpu")
    model.load_state_dict(p["model"])
    assert np.array_equal(np.load(fine / "conv1_init.npy"), model.conv1_kernels().numpy())  # W0 = pre-trained
    log = json.loads((fine / "log.jsonl").read_text().splitlines()[0])
    assert log["lr"] == pytest.approx({"conv1.weight": 1e-4, "conv1.bias": 0.01, "weight": 1e-3,
                                       "fc8.weight": 0.01, "bias": 0.01})
    # another network (no conv6) is refused before anything is written
    assert exit_status(train.main, train_argv(tiny_cache, tmp_path / "x",
                                              "--epochs", "1", "--train-batches", "1",
                                              "--init-from", str(pre))) == 2
    assert "differs from this one at" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_init_from_refuses_a_crafted_checkpoint(tiny_cache, tmp_path, capsys):
    marker = tmp_path / "pwned"
    bad = tmp_path / "ckpt-e0001-s000000001.pt"
    torch.save({"model": {}, "config": {}, "payload": _RunsCode(marker)}, bad)
    assert exit_status(train.main, train_argv(tiny_cache, tmp_path / "r", "--epochs", "1",
                                              "--init-from", str(bad))) == 2
    assert "refused" in capsys.readouterr().err and not marker.exists()


def checkpoint_of(run_dir):
    from alexnet import checkpoint
    return checkpoint.latest(run_dir)


def test_train_takes_a_whole_config_file_with_flags_on_top(tmp_path):
    cfg = AlexNetConfig.from_profile("cuda-convnet", num_classes=7, lrn=False, epochs=3)
    f = tmp_path / "c.json"
    f.write_text(json.dumps(cfg.to_dict()))
    _, args = train.parse_args(["--cache", "c", "--run-dir", "r", "--config", str(f), "--dropout", "0.3"])
    assert train.config_from_args(args, num_classes=99) == cfg.replace(dropout=0.3)


@pytest.mark.slow  # every measurement once on the CPU: about 27 s
def test_benchmark_runs_to_its_json(tiny_cache, tmp_path):
    """tools.bench end to end (what tools/gpu_check.sh runs on a GPU): the JSON with
    its measurements, ratios and 90-epoch projection is written."""
    assert bench.main(["--device", "cpu", "--quick", "-b", "2", "--cache", str(tiny_cache),
                       "--out", str(tmp_path)]) == 0
    (out,) = tmp_path.glob("bench-cpu-*.json")
    res = json.loads(out.read_text())
    assert res["img_s"]["step/faithful"] > 0 and res["img_s"]["step/forward"] > 0
    assert res["projection"]["hours"] > 0
    assert res["device"] in res["projection"]["setup"]
