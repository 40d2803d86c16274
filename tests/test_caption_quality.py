"""``mcq experiment caption-quality`` (and ``benchmarks/caption_quality.py``) on a tiny budget: every arm and seed in
the table and the JSON, the summary computed from the rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mcq.cli import main
from mcq.experiments.caption_quality import summarize

TINY = ["--seeds", "3", "--n-train", "16", "--n-val", "8", "--n-seg", "4", "--data-size", "32", "--clip-steps", "2",
        "--clip-batch", "4", "--clip-img-size", "32", "--text-width", "64", "--text-layers", "1", "--seg-steps", "2",
        "--seg-batch", "2", "--seg-img-size", "32"]


@pytest.mark.slow
def test_tiny_run_has_every_arm_and_seed(capsys, tmp_path):
    rc = main(["experiment", "caption-quality", "--out", str(tmp_path / "cq"), *TINY])
    out, err = capsys.readouterr()
    assert rc == 0, err
    table = out[out.index("arm     CLIP captions"):]
    for arm, captions in (("txt", "gt"), ("gt+syn", "gt,syn"), ("none", "(none)")):
        assert any(line.split()[:2] == [arm, captions] for line in table.splitlines()), table
    assert "seeds 3" in table and "written:" in table

    r = json.loads((tmp_path / "cq" / "caption_quality.json").read_text())
    assert r["complete"] and r["config"]["seeds"] == [3]
    assert [(row["arm"], row["seed"]) for row in r["rows"]] == [("txt", 3), ("gt+syn", 3), ("none", 3)]
    assert set(r["summary"]) == {"txt", "gt+syn", "none"}
    for row in r["rows"]:
        assert 0 <= row["mIoU"] <= 1
        assert (row["recall"] is None) == (row["arm"] == "none")
        if row["recall"]:  # scored on both caption kinds, whichever the arm trained on
            assert set(row["recall"]) == {"gt", "syn"}
    assert (tmp_path / "cq" / "gt_syn-seed3" / "clip" / "checkpoints" / "openclip.pt").is_file()
    seg_cfg = json.loads((tmp_path / "cq" / "gt_syn-seed3" / "seg" / "config.json").read_text())
    assert seg_cfg["train"]["init"].endswith("openclip.pt") and seg_cfg["train"]["seed"] == 3


def test_summary_is_mean_and_spread_over_seeds():
    rec = lambda a, b: {"gt": {"i2t_R@1": a, "t2i_R@1": b}}  # noqa: E731
    rows = [{"arm": "txt", "seed": 0, "mIoU": 0.2, "recall": rec(0.1, 0.3)},
            {"arm": "txt", "seed": 1, "mIoU": 0.4, "recall": rec(0.3, 0.5)},
            {"arm": "none", "seed": 0, "mIoU": 0.1, "recall": None}]
    s = summarize(rows)
    assert s["txt"]["mIoU"]["mean"] == pytest.approx(0.3) and s["txt"]["mIoU"]["std"] == pytest.approx(2 ** 0.5 / 10)
    assert s["txt"]["R@1"]["gt"] == pytest.approx(0.3)
    assert s["none"] == {"mIoU": {"mean": 0.1, "std": 0.0, "min": 0.1, "max": 0.1, "n": 1}}


def test_bad_seeds_are_a_one_line_error(capsys, tmp_path):
    assert main(["experiment", "caption-quality", "--out", str(tmp_path / "x"), "--seeds", "0,a"]) == 2
    assert "--seeds '0,a': expected integers" in capsys.readouterr().err


def test_benchmark_script_is_the_command():
    proc = subprocess.run([sys.executable, "benchmarks/caption_quality.py", "--help"], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1], timeout=120)
    assert proc.returncode == 0 and "--clip-steps" in proc.stdout and "caption-quality" in proc.stdout
