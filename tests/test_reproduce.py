"""`bash reproduce/run_all.sh` end to end on a tiny embedded dataset, and the registry."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet.experiments import ABLATIONS, EXPERIMENTS, TABLE1, TABLE2, select
from alexnet.figures import SCALE, kernel_grid

ROOT = Path(__file__).resolve().parent.parent


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


def run_all(tmp_path, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", "reproduce/run_all.sh", "--scale", "smoke", "--synthetic-size", "4,12,4",
                           "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results"), *args],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)


def test_run_all_tiny_end_to_end(tmp_path):
    r = run_all(tmp_path, "--experiments", "1cnn,no-lrn,fig1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
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
    ablation_rows = {r["ablation"]: r for r in json.loads((res / "tables" / "ablations.json").read_text())}
    assert ablation_rows["no-lrn"]["ours_top1"] is not None and ablation_rows["pool-z2"]["scale"] == "not run"
    for fig in ("conv1_kernels.png", "figure4.png", "figure1_relu_tanh.png", "training_curves.png"):
        assert Image.open(res / "figures" / fig).size[0] > 300, fig
    assert "all done" in r.stdout

    # Figure 3 from the same checkpoint: 2 towers × 48 kernels, 3 rows of 16 each
    from alexnet.evaluate import load_model
    model, _, _ = load_model(tmp_path / "work" / "runs" / "synthetic-4x12x4" / "1cnn", "cpu")
    assert [t.conv1.weight.shape[0] for t in model.towers] == [48, 48]
    grid = kernel_grid(model.towers[0].conv1.weight)
    assert grid.shape == (3 * (11 * SCALE + 1) + 1, 16 * (11 * SCALE + 1) + 1, 3)
    tile = grid[1:1 + 11 * SCALE, 1:1 + 11 * SCALE]
    assert np.isclose(tile.min(), 0) and np.isclose(tile.max(), 1)  # each kernel scaled to its own range

    # idempotent: a second run skips every finished stage
    again = run_all(tmp_path, "--experiments", "1cnn,no-lrn,fig1")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "alexnet.train" not in again.stdout and again.stdout.count("done already") >= 6


def test_run_all_refuses_bad_input_before_work(tmp_path):
    for bad, msg in ((["--imagenet", str(tmp_path / "none")], "no such directory"),
                     (["--experiments", "1cnn,bogus"], "unknown experiment"),
                     (["--devices", "cuda:5"], "does not exist"),
                     (["--data", str(tmp_path)], "expected an ImageFolder")):
        r = run_all(tmp_path, *bad)
        assert r.returncode == 2 and msg in r.stderr, (bad, r.stderr[-500:])
    assert not (tmp_path / "work").exists()
