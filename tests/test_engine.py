"""The training engine end to end: resume after an interruption, and a two-process DDP run."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from interrupt import StopAt
from mcq.train.config import TrainConfig
from mcq.train.train import train

TINY = dict(backbone="mci0", img_size=64, batch_size=2, workers=0, accelerator="cpu")


@pytest.mark.parametrize("task, data, extra, killed", [
    ("seg", "synth_data", {}, True), ("depth", "synth_depth_data", {}, True), ("cls", "synth_cls_data", {}, False),
    ("det", "synth_det_data", dict(fpn_channels=16, roi_batch_size=8), True),
])
def test_a_resumed_run_ends_as_the_uninterrupted_one(request, tmp_path, task, data, extra, killed):
    """A run stopped after step 3, then resumed, ends with the metrics of the same run uninterrupted: from
    ``interrupted.ckpt`` (step 3; Ctrl-C), or, ``killed``, from ``last.ckpt`` alone (step 2, mid-epoch), which is
    what a SIGKILL leaves. The resumed run takes the batches, augmentations and random draws the uninterrupted one
    takes (``mcq.train.sampling``)."""
    cfg = dict(task=task, data=str(request.getfixturevalue(data)), max_steps=5, val_every=2, seed=3, **TINY, **extra)
    _, whole = train(TrainConfig(out=str(tmp_path / "whole"), **cfg))
    run = tmp_path / "run"
    with pytest.raises(SystemExit):  # Lightning turns Ctrl-C into a graceful exit(1)
        train(TrainConfig(out=str(run), **cfg), callbacks=[StopAt(3)])
    assert not (run / "metrics.json").exists(), "an interrupted run must not look finished"
    assert torch.load(run / "checkpoints" / "interrupted.ckpt", weights_only=True)["global_step"] == 3
    if killed:
        (run / "checkpoints" / "interrupted.ckpt").unlink()
        assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2

    _, metrics = train(TrainConfig(out=str(run), resume=True, accelerator="cpu"))  # task and all else from config.json
    assert metrics == whole
    assert json.loads((run / "metrics.json").read_text())["step"] == 5
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5
    assert not (run / "checkpoints" / "interrupted.ckpt").exists()


@pytest.mark.parametrize("val_every", [1, 2])  # the last step validated, or after the last validation
def test_last_checkpoint_is_the_runs_end(synth_data, tmp_path, val_every):
    """``last.ckpt`` holds the last step, after the last validation too; ``best.ckpt`` the step of the first best
    mIoU logged (lr 0 changes only BatchNorm's running statistics, so the best may be any validation)."""
    run = tmp_path / "run"
    train(TrainConfig(task="seg", data=str(synth_data), max_steps=3, val_every=val_every, lr=0.0, out=str(run), **TINY))
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    rows = list(csv.DictReader((run / "logs" / "metrics.csv").open()))  # a validation after step s logs step s - 1
    during = {int(r["step"]) + 1: float(r["val/mIoU"]) for r in rows if r.get("val/mIoU") and int(r["step"]) < 3}
    assert sorted(during) == list(range(val_every, 4, val_every))
    best = max(during, key=lambda step: (during[step], -step))
    assert torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["global_step"] == best


@pytest.mark.slow
def test_two_process_ddp_run(synth_data, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "mcq", "train", "seg", "--backbone", "mci0", "--data", str(synth_data), "--img-size", "64",
           "--batch-size", "2", "--max-steps", "3", "--val-every", "3", "--workers", "0", "--accelerator", "cpu",
           "--devices", "2", "--out", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == 3 and metrics["mIoU"] is not None
