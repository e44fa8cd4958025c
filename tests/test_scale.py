"""The scale test's own parts (tools/scale_test.py): its memory reading, its verdict and its
projection; the whole test on a small set is slow."""

import json
import sys

import pytest

from tools import scale_test
from tools.scale_test import MiB


def test_peak_rss_reads_what_a_process_holds(tmp_path):
    hold = [sys.executable, "-c", "import numpy as np; a = np.ones(300 * 2**20, np.uint8); print(a.sum())"]
    peak, _ = scale_test.peak_rss(hold, tmp_path / "log")
    base, _ = scale_test.peak_rss([sys.executable, "-c", "import numpy"], tmp_path / "log")
    assert 290 * MiB < peak - base < 330 * MiB
    with pytest.raises(RuntimeError, match="exited with 3"):
        scale_test.peak_rss([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "log")


def test_verdict_and_projection():
    assert scale_test.verdict(1000 * MiB, 1090 * MiB) == (True, 100 * MiB)  # 10% of 1000 MiB
    assert scale_test.verdict(100 * MiB, 170 * MiB) == (False, 64 * MiB)  # the 64 MiB floor
    assert scale_test.project(2000, 500, 8000, 510, 1_000_000, flat=True) == 510
    assert scale_test.project(2000, 500, 8000, 800, 14000, flat=False) == 1100  # 0.05 per image


@pytest.mark.slow
def test_scale_test_runs_every_stage(tmp_path):
    code = scale_test.main(["--classes", "64", "--train", "2,4", "--val", "1,2", "--fig1-cap", "100",
                            "--work", str(tmp_path / "w"), "--out", str(tmp_path / "out")])
    report = json.loads((tmp_path / "out" / "scale_test.json").read_text())
    assert [r["stage"] for r in report["stages"]] == ["prepare", "train", "evaluate", "features:train",
                                                       "features:val", "figures", "figure1"]
    assert code == (0 if all(r["flat"] for r in report["stages"]) else 1)
    assert (tmp_path / "out" / "scale_test.md").read_text().count("| prepare |") == 1
