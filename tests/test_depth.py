"""Depth: the NYUv2 metrics against hand computations, the BTS/GLPDepth layout, the model, the recipe, and a tiny
train + eval through the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_argv
from mcq.cli import main
from mcq.data import NYUv2, read_depth
from mcq.data.nyu import TEST_DIR, TRAIN_LIST
from mcq.train.depth_module import DepthTask, silog_loss
from mcq.tasks.metrics import DEPTH_KEYS, DepthMetrics, depth_errors, eigen_mask
from mcq.train.module import half_cycle
from mcq.train.config import TrainConfig
from mcq.train.train import resolve_recipe
from mcq.errors import McqError
from mcq.models.depth import DepthModel, DepthModelConfig
from mcq.recipes import load_recipe


def test_depth_errors_hand_computed():
    # pred 1, 2, 4 against gt 1, 1, 5: ratios max(gt/pred, pred/gt) = 1, 2, 1.25
    e = depth_errors(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 1.0, 5.0]))
    assert e["d1"] == pytest.approx(1 / 3)  # 1.25 is not < 1.25
    assert e["d2"] == pytest.approx(2 / 3)  # 1.25 < 1.5625, 2 is not
    assert e["d3"] == pytest.approx(2 / 3)  # 2 is not < 1.953125
    assert e["abs_rel"] == pytest.approx((0 + 1 / 1 + 1 / 5) / 3)
    assert e["sq_rel"] == pytest.approx((0 + 1 / 1 + 1 / 5) / 3)
    assert e["rmse"] == pytest.approx(math.sqrt((0 + 1 + 1) / 3))
    assert e["rmse_log"] == pytest.approx(math.sqrt((math.log(2) ** 2 + math.log(1.25) ** 2) / 3))
    assert e["log10"] == pytest.approx((math.log10(2) + math.log10(1.25)) / 3)


def test_eigen_crop_on_nyu_frames():
    m = eigen_mask(480, 640)
    assert int(m.sum()) == (471 - 45) * (601 - 41)
    assert m[45, 41] and m[470, 600]
    assert not m[44, 41] and not m[45, 40] and not m[471, 600] and not m[470, 601]


def test_depth_metrics_keep_valid_pixels_in_the_crop_and_average_images():
    h, w = 48, 64
    inside = eigen_mask(h, w)
    gt = torch.full((h, w), 2.0)
    gt[10, 10:20] = 0.0  # no measurement
    gt[20, 10:20] = 12.0  # beyond 10 m
    pred = torch.where(inside, 2.0, 9.0)  # wrong only outside the crop
    pred[10, 10:20] = pred[20, 10:20] = 5.0  # and on the invalid pixels
    metrics = DepthMetrics()
    metrics.update(pred[None, None], [gt])
    metrics.update(torch.full((1, 1, h // 2, w // 2), 1.0), [gt])  # upsampled to gt: off by 1 m everywhere
    m = metrics.compute()
    assert m["images"] == 2
    assert m["rmse"] == pytest.approx((0 + 1) / 2)
    assert m["d1"] == pytest.approx((1 + 0) / 2)
    assert m["abs_rel"] == pytest.approx((0 + 0.5) / 2)
    # predictions are clamped to (1e-3, 10): a zero prediction gives finite errors
    zero = DepthMetrics()
    zero.update(torch.zeros(1, 1, h, w), [gt])
    assert all(math.isfinite(v) for v in zero.compute().values())


def test_silog_is_zero_for_a_global_scale_when_lambda_is_one():
    gt = torch.tensor([1.0, 2.0, 4.0])
    assert float(silog_loss(3 * gt, gt, lam=1.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(silog_loss(3 * gt, gt, lam=0.5)) == pytest.approx(math.sqrt(0.5) * math.log(3), rel=1e-5)


def test_nyu_layout_and_millimetres(synth_depth_data):
    lines = (synth_depth_data / TRAIN_LIST).read_text().splitlines()
    assert len(lines) == 6 and lines[0].split()[:2] == ["/room_0000/rgb_00000.jpg", "/room_0000/sync_depth_00000.png"]
    train, test = NYUv2(synth_depth_data, "train"), NYUv2(synth_depth_data, "test")
    assert len(train) == 6 and len(test) == 3
    assert all(p.parent.parent == synth_depth_data / TEST_DIR for p, _ in test.pairs)
    image, depth = test[0]
    with Image.open(test.pairs[0][1]) as im:
        assert im.mode == "I;16"
        mm = np.array(im)
    assert image.size == (64, 48) and depth.shape == (48, 64) and depth.dtype == np.float32
    np.testing.assert_allclose(depth, mm / 1000.0, rtol=1e-6)
    assert depth[0].max() == 0 and 1.0 < depth[24, 32] < 10.0  # unmeasured border, a room-sized middle


def test_read_depth_rejects_an_8_bit_png(tmp_path):
    path = tmp_path / "sync_depth_00000.png"
    Image.fromarray(np.full((4, 4), 200, np.uint8)).save(path)
    with pytest.raises(McqError, match="16-bit"):
        read_depth(path)


def test_depth_model_gives_metres_at_input_size():
    model = DepthModel(DepthModelConfig("mci0", max_depth=10.0)).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 64, 96))
    assert y.shape == (2, 1, 64, 96)
    assert float(y.min()) > 0 and float(y.max()) < 10.0


def test_layer_decay_scales_the_trunk_and_not_the_head():
    recipe = resolve_recipe(TrainConfig(task="depth", backbone="mci0", max_steps=10)).resolve(steps_per_epoch=4)
    task = DepthTask(model=dict(encoder="mci0"), optim=vars(recipe) | {"lr": 1.0})
    groups = task.param_groups()
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in task.model.parameters())  # every parameter, once
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lr_of[id(task.model.head.predict[-1].weight)] == 1.0
    stem = lr_of[id(next(task.model.encoder.trunk.stem.parameters()))]
    assert stem == pytest.approx(0.8 ** round(math.log(stem, 0.8)))  # a power of the decay
    assert stem < 0.8**10
    wd = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert wd[id(task.model.head.predict[-1].bias)] == 0.0 and wd[id(task.model.head.predict[-1].weight)] == 0.05


def test_layer_decay_1_trains_every_layer_at_the_peak_lr():
    recipe = resolve_recipe(TrainConfig(task="depth", backbone="mci0", max_steps=10, layer_decay=1.0))
    task = DepthTask(model=dict(encoder="mci0"), optim=vars(recipe.resolve(steps_per_epoch=4)) | {"lr": 1.0})
    assert {g["lr"] for g in task.param_groups()} == {1.0}


def test_half_cycle_schedule():
    assert half_cycle(0, 100, 0.9, 0.1) == pytest.approx(0.1)
    assert half_cycle(50, 100, 0.9, 0.1) == pytest.approx(1.0)
    assert half_cycle(25, 100, 0.9, 0.1) == pytest.approx(0.9 * 0.5**0.9 + 0.1)
    assert half_cycle(100, 100, 0.9, 0.1) == pytest.approx(0.1)


def test_recipe_is_the_papers_table_15():
    r = load_recipe("depth")
    assert (r.img_size, r.epochs, r.batch_size) == (480, 25, 24)
    assert (r.layer_decay, r.weight_decay, r.lr) == (0.8, 0.05, 0.0005)
    assert r.max_steps is None  # epochs decide, unless --max-steps
    assert r.resolve(steps_per_epoch=10).max_steps == 250
    assert r.resolve(steps_per_epoch=10).val_every == 10  # once per epoch


def test_tiny_train_and_eval_through_the_cli(capsys, synth_depth_data, tmp_path):
    out = tmp_path / "run"
    assert main(tiny_argv("depth", synth_depth_data, out)) == 0
    printed = capsys.readouterr().out
    assert "rmse_log" in printed and f"run written to {out}" in printed
    for f in ("config.json", "metrics.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt", "logs/metrics.csv"):
        assert (out / f).is_file(), f
    trained = json.loads((out / "metrics.json").read_text())
    assert trained["step"] == 2 and trained["images"] == 3
    assert all(math.isfinite(trained[k]) for k in DEPTH_KEYS)
    assert "val/rmse" in (out / "logs" / "metrics.csv").read_text().splitlines()[0]

    js = tmp_path / "eval.json"
    argv = ["eval", "depth", "--checkpoint", str(out / "checkpoints" / "last.ckpt"), "--data", str(synth_depth_data),
            "--workers", "0", "--json", str(js)]
    assert main(argv) == 0
    evaluated = json.loads(js.read_text())
    for k in DEPTH_KEYS:  # the same checkpoint on the same frames: the same figures
        assert evaluated[k] == pytest.approx(trained[k], rel=1e-4)


def test_cli_synth_writes_the_nyu_layout(capsys, tmp_path):
    out = tmp_path / "nyu"
    assert main(["data", "synth", "depth", "--out", str(out), "--train", "3", "--val", "2", "--size", "32"]) == 0
    assert f"wrote 3 training + 2 test images to {out}" in capsys.readouterr().out
    assert len(NYUv2(out, "train")) == 3 and len(NYUv2(out, "test")) == 2
    image, depth = NYUv2(out, "test")[1]
    assert image.size == (32, 24) and depth.shape == (24, 32) and depth.max() <= 10.0
    assert [p.name for p in tmp_path.iterdir()] == ["nyu"]  # no staging folder left beside it
