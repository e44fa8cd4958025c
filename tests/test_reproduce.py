"""`run_all` end to end on a tiny embedded dataset (in this process), and the registry."""

import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.data.cache import Cache
from alexnet.engine import evaluate, load_model
from reproduce import run_all as run_all_module
from reproduce.experiments import ABLATIONS, EXPERIMENTS, SCALES, TABLE1, TABLE2, Run, run_config, select
from reproduce.figures import SCALE, kernel_grid

from .conftest import ENV, ROOT


def test_registry_has_every_row_and_ablation():
    assert [m for m, *_ in TABLE1] == ["Sparse coding [2]", "SIFT + FVs [24]", "CNN"]
    assert [m for m, *_ in TABLE2] == ["SIFT + FVs [7]", "1 CNN", "5 CNNs", "1 CNN*", "7 CNNs*"]
    for name in ("1cnn", "5cnns", "1cnn-star", "fig1", "no-lrn", "pool-z2", "one-tower", "no-pca",
                 "no-dropout", "cuda-convnet"):
        assert name in EXPERIMENTS
    assert set(ABLATIONS) == {"no-lrn", "pool-z2", "one-tower", "no-pca", "no-dropout", "cuda-convnet"}
    assert len(EXPERIMENTS["5cnns"].runs) == 5 and len({r.seed for r in EXPERIMENTS["5cnns"].runs}) == 5
    assert EXPERIMENTS["one-tower"].runs[0].overrides == {"towers": 1}
    assert EXPERIMENTS["cuda-convnet"].runs[0].profile == "cuda-convnet"
    assert EXPERIMENTS["1cnn-star"].runs[0].overrides == {"extra_conv6": True}
    assert [e.name for e in select("no-lrn")] == ["baseline-short", "no-lrn"]
    with pytest.raises(ValueError, match="unknown experiment"):
        select("1cnn,alexnet-v2")


def test_run_config_takes_any_config_field():
    """Overrides reach AlexNetConfig as fields, whether or not the CLI has a flag for them."""
    cfg = run_config(Run("x", {"bias_weight_decay": False, "lr_patience": 3}, seed=4), SCALES["embedded"]["short"],
                     num_classes=10)
    assert (cfg.bias_weight_decay, cfg.lr_patience, cfg.seed, cfg.num_classes) == (False, 3, 4, 10)
    assert (cfg.epochs, cfg.batch_size) == (1, 32)


def run_all(tmp_path, capsys, *args) -> tuple[int, str, str]:
    argv = ["--scale", "smoke", "--synthetic-size", "4,12,4", "--work", str(tmp_path / "work"),
            "--results", str(tmp_path / "results"), *args]
    try:
        code = run_all_module.main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_run_all_tiny_end_to_end(tmp_path, capsys):
    code, out, err = run_all(tmp_path, capsys, "--experiments", "1cnn,no-lrn,fig1")
    assert code == 0, out[-3000:] + err[-3000:]
    res = tmp_path / "results"
    for name in ("table1", "table2", "ablations"):
        for ext in ("md", "csv", "json"):
            assert (res / "tables" / f"{name}.{ext}").exists(), f"{name}.{ext}"
    t1 = (res / "tables" / "table1.md").read_text()
    t2 = (res / "tables" / "table2.md").read_text()
    ab = (res / "tables" / "ablations.md").read_text()
    for number in ("47.1", "28.2", "45.7", "25.7", "37.5", "17.0"):
        assert number in t1
    for number in ("40.7", "18.2", "38.1", "16.4", "39.0", "16.6", "36.7", "15.4", "15.3", "26.2"):
        assert number in t2
    assert "1.4 / 1.2" in ab and "0.4 / 0.3" in ab and "1.7 / 1.2" in ab
    assert "needs ImageNet Fall 2011" in t2 and "dataset: embedded synthetic" in t2 and "commit:" in t2
    rows = json.loads((res / "tables" / "table2.json").read_text())
    assert rows[1]["model"] == "1 CNN" and rows[1]["ours_top1_val"] is not None
    # the table's number is the run's: evaluate the 1cnn checkpoint again, ten patches
    run_dir = tmp_path / "work" / "runs" / "synthetic-4x12x4" / "1cnn"
    cache = Cache(tmp_path / "work" / "cache" / "synthetic-4x12x4")
    again, _ = evaluate(cache, [run_dir], "val", ("ten",), "cpu", workers=0)
    assert rows[1]["ours_top1_val"] == round(100 * again["ensemble"]["ten"]["top1"], 2)
    assert rows[1]["ours_top5_val"] == round(100 * again["ensemble"]["ten"]["top5"], 2)
    ablation_rows = {r["ablation"]: r for r in json.loads((res / "tables" / "ablations.json").read_text())}
    assert ablation_rows["no-lrn"]["ours_top1"] is not None and ablation_rows["pool-z2"]["scale"] == "not run"
    for fig in ("conv1_kernels.png", "figure4.png", "figure1_relu_tanh.png", "training_curves.png"):
        assert Image.open(res / "figures" / fig).size[0] > 300, fig
    assert "all done" in out
    assert str(tmp_path) not in (res / "eval" / "1cnn.json").read_text()  # no absolute path of this machine

    # Figure 3 from the same checkpoint: 2 towers × 48 kernels, 3 rows of 16 each
    model, _, _ = load_model(tmp_path / "work" / "runs" / "synthetic-4x12x4" / "1cnn", "cpu")
    assert [t.conv1.weight.shape[0] for t in model.towers] == [48, 48]
    grid = kernel_grid(model.towers[0].conv1.weight)
    assert grid.shape == (3 * (11 * SCALE + 1) + 1, 16 * (11 * SCALE + 1) + 1, 3)
    tile = grid[1:1 + 11 * SCALE, 1:1 + 11 * SCALE]
    assert np.isclose(tile.min(), 0) and np.isclose(tile.max(), 1)  # each kernel scaled to its own range

    # idempotent: a second run skips every finished stage
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    code, again, err = run_all(tmp_path, capsys, "--experiments", "1cnn,no-lrn,fig1")
    assert code == 0, err[-2000:]
    assert "\ntrain " not in again and again.count("done already") >= 6, again
    model, _, _ = load_model(tmp_path / "work" / "runs" / "synthetic-4x12x4" / "1cnn", "cpu")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())


def test_run_all_refuses_bad_input_before_work(tmp_path, capsys):
    for bad, msg in ((["--imagenet", str(tmp_path / "none")], "no such directory"),
                     (["--experiments", "1cnn,bogus"], "unknown experiment"),
                     (["--devices", "cuda:5"], "does not exist"),
                     (["--data", str(tmp_path)], "expected an ImageFolder")):
        code, _, err = run_all(tmp_path, capsys, *bad)
        assert code == 2 and msg in err, (bad, err[-500:])
    assert not (tmp_path / "work").exists()


def test_run_all_sh_prints_its_help():
    """The shell entry point finds its Python and the package."""
    r = subprocess.run(["bash", "reproduce/run_all.sh", "--help"], cwd=ROOT, capture_output=True, text=True,
                       env=ENV, timeout=300)
    assert r.returncode == 0 and "Regenerate the paper's tables" in r.stdout, r.stderr[-2000:]
