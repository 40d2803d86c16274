"""``mcq experiment caption-quality`` (and ``benchmarks/caption_quality.py``) on a tiny budget: every arm, seed and
score in the table and the JSON; the gaps, intervals and verdicts computed from the rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mcq.cli import main
from mcq.experiments.caption_quality import PROBE, ZERO_SHOT, ZERO_SHOT_5, summarize
from mcq.experiments.stats import paired_gap, verdict

TINY = ["--seeds", "3,4", "--n-train", "16", "--n-val", "8", "--n-seg", "4", "--data-size", "32", "--clip-steps", "2",
        "--clip-batch", "4", "--clip-img-size", "32", "--text-width", "64", "--text-layers", "1", "--seg-steps", "2",
        "--probe-steps", "2", "--fractions", "0.5,1", "--seg-batch", "2", "--seg-img-size", "32"]


@pytest.mark.slow
def test_tiny_run_has_every_arm_seed_and_score(capsys, tmp_path):
    rc = main(["experiment", "caption-quality", "--out", str(tmp_path / "cq"), *TINY])
    out, err = capsys.readouterr()
    assert rc == 0, err
    table = out[out.index("score    "):]
    for name in (ZERO_SHOT, ZERO_SHOT_5, PROBE, "mIoU @50%", "mIoU @100%", "gt+syn - txt", "txt - none"):
        assert name in table, table
    assert table.count("verdict: ") == 3 and "written:" in out
    assert sum(line.split()[:2] in (["txt", "3"], ["gt+syn", "4"], ["none", "4"]) for line in table.splitlines()) == 3

    r = json.loads((tmp_path / "cq" / "caption_quality.json").read_text())
    assert r["complete"] and r["config"]["seeds"] == [3, 4] and r["config"]["fractions"] == [0.5, 1.0]
    arms = ("txt", "gt+syn", "none")
    assert [(row["arm"], row["seed"]) for row in r["rows"]] == [(a, s) for s in (3, 4) for a in arms]
    for row in r["rows"]:
        assert 0 <= row["probe"] <= 1 and set(row["finetune"]) == {"0.5", "1.0"}
        assert (row["recall"] is None) == (row["zero_shot"] is None) == (row["arm"] == "none")
    assert set(r["gaps"]["gt+syn - txt"]) == {ZERO_SHOT, ZERO_SHOT_5, PROBE, "mIoU @50%", "mIoU @100%"}
    assert ZERO_SHOT not in r["gaps"]["txt - none"] and r["gaps"]["txt - none"][PROBE]["n"] == 2
    half = tmp_path / "cq" / "data-seg-50"
    assert len(list((half / "images" / "training").iterdir())) == 2
    assert len(list((half / "annotations" / "validation").iterdir())) == 2  # every validation image
    probe_cfg = json.loads((tmp_path / "cq" / "gt_syn-seed3" / "probe" / "config.json").read_text())
    assert probe_cfg["train"]["freeze_encoder"] and probe_cfg["train"]["init"].endswith("openclip.pt")


def test_a_frozen_encoder_probe_trains_the_head_only(synth_data, tmp_path):
    """``--freeze-encoder``: the encoder ends as the CLIP checkpoint gave it (weights and BatchNorm statistics), and
    the optimizer holds the neck's and the decode head's parameters, nothing else."""
    import timm
    import torch

    from ckpt_layouts import randomize_, save_openclip
    from conftest import TINY_TRAIN
    from mcq.train.config import TrainConfig
    from mcq.train.train import train

    trunk = randomize_(timm.create_model("fastvit_mci0", num_classes=0), seed=1)
    init = save_openclip({f"visual.trunk.{k}": v for k, v in trunk.state_dict().items()}, tmp_path / "clip", "bare")
    run, _ = train(TrainConfig(task="seg", data=str(synth_data), out=str(tmp_path / "p"), freeze_encoder=True,
                               init=str(init), **TINY_TRAIN))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    state = ckpt["state_dict"]
    for k, v in trunk.state_dict().items():
        if f"model.encoder.trunk.{k}" in state:  # timm's classifier head is not in the encoder
            assert torch.equal(state[f"model.encoder.trunk.{k}"], v), k
    trained = sum(len(g["params"]) for g in ckpt["optimizer_states"][0]["param_groups"])
    heads = [k for k in state if k.startswith(("model.neck.", "model.decode_head.")) and "running_" not in k
             and "num_batches" not in k]
    assert trained == len(heads)


def test_a_paired_gap_has_students_interval():
    g = paired_gap([0.5, 0.6, 0.7], [0.4, 0.4, 0.4])  # differences 0.1, 0.2, 0.3: sd 0.1, t(0.975, 2) = 4.303
    assert g["mean"] == pytest.approx(0.2) and g["n"] == 3
    assert g["high"] - g["mean"] == pytest.approx(4.3027 * 0.1 / 3 ** 0.5, rel=1e-4)  # 0.248 > 0.2
    assert not g["separated"] and g["low"] < 0 < g["high"]
    g = paired_gap([0.58, 0.6, 0.62], [0.4, 0.4, 0.4])  # sd 0.02: 0.2 +- 0.05
    assert g["separated"] is True and g["low"] == pytest.approx(0.2 - 4.3027 * 0.02 / 3 ** 0.5, rel=1e-4)
    assert paired_gap([0.5], [0.4])["low"] is None and not paired_gap([0.5], [0.4])["separated"]


def test_a_verdict_says_where_each_arm_wins():
    gaps = {"a": {"mean": 0.1, "separated": True, "n": 3}, "b": {"mean": -0.1, "separated": True, "n": 3},
            "c": {"mean": 0.1, "separated": False, "n": 3}}
    assert verdict("x", "y", gaps) == ("x vs y (95% intervals over 3 seeds): x beats y on a; y beats x on b; "
                                       "not separated on c")


def test_summary_pairs_arms_by_seed():
    def row(arm, seed, probe, zs=None):
        return {"arm": arm, "seed": seed, "probe": probe, "finetune": {"1.0": probe}, "recall": None,
                "zero_shot": None if zs is None else {"top1": zs, "top5": zs}}

    rows = [row("txt", 0, 0.2, 0.1), row("txt", 1, 0.4, 0.1), row("gt+syn", 0, 0.3, 0.3), row("gt+syn", 1, 0.5, 0.5),
            row("none", 0, 0.1)]
    r = summarize(rows)
    assert r["summary"]["txt"][PROBE]["mean"] == pytest.approx(0.3)
    assert r["summary"]["txt"][PROBE]["std"] == pytest.approx(2 ** 0.5 / 10)
    gap = r["gaps"]["gt+syn - txt"]
    assert gap[PROBE]["mean"] == pytest.approx(0.1) and gap[PROBE]["high"] == pytest.approx(0.1)  # no spread
    assert gap[PROBE]["separated"]
    assert gap[ZERO_SHOT]["mean"] == pytest.approx(0.3) and not gap[ZERO_SHOT]["separated"]  # 0.2, 0.4: t(1) = 12.7
    assert r["gaps"]["txt - none"][PROBE]["n"] == 1  # only seed 0 ran both
    assert len(r["verdicts"]) == 3


def test_bad_seeds_and_fractions_are_one_line_errors(capsys, tmp_path):
    assert main(["experiment", "caption-quality", "--out", str(tmp_path / "x"), "--seeds", "0,a"]) == 2
    assert "--seeds '0,a': expected integers" in capsys.readouterr().err
    assert main(["experiment", "caption-quality", "--out", str(tmp_path / "x"), "--fractions", "0.1,2"]) == 2
    assert "--fractions '0.1,2': shares of the labelled set" in capsys.readouterr().err


def test_benchmark_script_is_the_command():
    proc = subprocess.run([sys.executable, "benchmarks/caption_quality.py", "--help"], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1], timeout=120)
    assert proc.returncode == 0 and "--clip-steps" in proc.stdout and "caption-quality" in proc.stdout
