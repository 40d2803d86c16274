"""Classification: the ImageFolder layout, the recipes of Table 12, a tiny fine-tune + eval through the CLI, and a
linear probe that leaves the encoder exactly as loaded."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import timm
import torch

from conftest import tiny_argv
from mcq.cli import main
from mcq.data import CLS_CLASSES, ClsTransform, ImageFolder
from mcq.errors import McqError
from mcq.recipes import load_recipe

MEAN, STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def test_imagefolder_layout(synth_cls_data):
    train = ImageFolder(synth_cls_data, "train")
    val = ImageFolder(synth_cls_data, "val", ClsTransform(32, False, MEAN, STD))
    assert train.classes == sorted(CLS_CLASSES) == val.classes
    assert len(train) == 20 and len(val) == 10
    assert sorted(label for _, label in val.samples) == list(range(10))
    assert all(p.parent.name == train.classes[label] for p, label in train.samples)
    image, label = val[3]
    assert image.shape == (3, 32, 32) and label == 3


def test_validation_class_folders_are_numbered_as_in_train(copy_of):
    cls = copy_of("synth_cls_data")
    for p in (cls / "val" / "circle").iterdir():
        p.unlink()
    (cls / "val" / "circle").rmdir()  # a class with no validation images: fine, the others keep their labels
    val = ImageFolder(cls, "val")
    assert len(val.classes) == 10 and {label for _, label in val.samples} == set(range(10)) - {val.classes.index("circle")}
    (cls / "val" / "unicorn").mkdir()
    with pytest.raises(McqError, match="unicorn"):
        ImageFolder(cls, "val")


def test_recipes_are_the_papers_table_12():
    ft, lp = load_recipe("cls", "finetune"), load_recipe("cls", "linear_probe")
    for r in (ft, lp):
        assert (r.img_size, r.epochs, r.warmup_epochs, r.batch_size, r.schedule) == (224, 100, 5, 1024, "cosine")
        assert (r.label_smoothing, r.drop_path, r.ema) == (0.1, 0.1, 0.9995)
    assert (ft.lr, ft.weight_decay, ft.linear_probe) == (1e-4, 0.05, False)
    assert (lp.lr, lp.weight_decay, lp.linear_probe) == (5e-4, 5e-4, True)
    short = dataclasses.replace(ft, max_steps=200).resolve(steps_per_epoch=10)
    assert (short.max_steps, short.warmup_steps) == (200, 10)  # --max-steps keeps the 5% warm-up


def test_tiny_finetune_and_eval_through_the_cli(capsys, synth_cls_data, tmp_path):
    out = tmp_path / "run"
    assert main(tiny_argv("cls", synth_cls_data, out, batch_size=4)) == 0
    assert "top5" in capsys.readouterr().out
    trained = json.loads((out / "metrics.json").read_text())
    assert trained["step"] == 2 and trained["images"] == 10 and trained["linear_probe"] is False
    assert all(0.0 <= trained[k] <= 1.0 and math.isfinite(trained[k]) for k in ("top1", "top5"))
    assert trained["top5"] >= trained["top1"]
    config = json.loads((out / "config.json").read_text())
    assert config["class_names"] == sorted(CLS_CLASSES) and config["recipe"]["lr"] == 1e-4
    assert config["recipe"]["ema"] == 0.9995
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    raw, averaged = ckpt["current_model_state"]["model.fc.weight"], ckpt["state_dict"]["model.fc.weight"]
    assert not torch.equal(raw, averaged)  # the checkpoint's weights are the EMA (kept apart from the raw ones)

    js = tmp_path / "eval.json"
    argv = ["eval", "cls", "--checkpoint", str(out / "checkpoints" / "last.ckpt"), "--data", str(synth_cls_data),
            "--workers", "0", "--json", str(js)]
    assert main(argv) == 0
    evaluated = json.loads(js.read_text())
    assert (evaluated["top1"], evaluated["top5"]) == pytest.approx((trained["top1"], trained["top5"]))


@pytest.mark.parametrize("probe", [True, False])
def test_linear_probe_leaves_the_encoder_as_loaded(capsys, synth_cls_data, tmp_path, probe):
    init = tmp_path / "fastvit_mci0.pt"
    torch.save(timm.create_model("fastvit_mci0", pretrained=False).state_dict(), init)
    out = tmp_path / "run"
    extra = ["--linear-probe"] if probe else []
    assert main(tiny_argv("cls", synth_cls_data, out, batch_size=4, lr=0.01) + ["--init", str(init)] + extra) == 0
    loaded = torch.load(init, weights_only=True)
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    trunk = {k.removeprefix("model.encoder.trunk."): v for k, v in state.items() if k.startswith("model.encoder.trunk.")}
    changed = [k for k, v in trunk.items() if not torch.equal(v, loaded[k])]  # weights and BatchNorm statistics
    if probe:
        assert not changed, changed[:5]
    else:
        assert len(changed) > len(trunk) // 2  # the control: fine-tuning moves the encoder
    assert not torch.equal(state["model.fc.weight"], torch.zeros_like(state["model.fc.weight"]))
    assert json.loads((out / "metrics.json").read_text())["linear_probe"] is probe


def test_cli_synth_writes_the_imagefolder_layout(capsys, tmp_path):
    out = tmp_path / "cls"
    assert main(["data", "synth", "cls", "--out", str(out), "--train", "2", "--val", "1", "--size", "32"]) == 0
    assert f"wrote 2 training + 1 validation images per class to {out}" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(CLS_CLASSES)
    assert len(list((out / "train" / "dots").glob("*.JPEG"))) == 2
    assert len(ImageFolder(out, "val")) == len(CLS_CLASSES)
    assert [p.name for p in tmp_path.iterdir()] == ["cls"]
