"""mmsegmentation checkpoints in and out (``mcq import mmseg``, ``mcq export mmseg``), against mmseg's own modules."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from ckpt_layouts import randomize_, timm_to_apple
from mcq.cli import main
from mcq.data.ade20k import read_class_names
from mcq.tasks.checkpoint import read_checkpoint, write_checkpoint
from mcq.tasks.specs import task_spec
from mcq.interop.backbones import infer_encoder
from mcq.errors import McqError
from mcq.interop.mm_checkpoint import MMCheckpoint, read_mm_checkpoint
from mcq.models.segmentor import SegModelConfig
from mcq.recipes import load_recipe
from mm_layouts import IMAGENET, MMSegModel, runner_checkpoint

CLASSES = ["wall", "sky", "tree", "road", "person", "car"]
PALETTE = [[120, 120, 120], [6, 230, 230], [4, 200, 3], [140, 140, 140], [150, 5, 61], [0, 102, 200]]


def _cli(capsys, argv: list) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _image() -> torch.Tensor:
    return torch.randn(1, 3, 96, 160, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module", params=["fpn", "upernet"])
def mmseg_run(request, tmp_path_factory):
    """An mmseg MCi0 model of either head with every weight perturbed, saved as mmengine's Runner saves it."""
    torch.manual_seed(3)  # the modules' own initialisation, which randomize_ perturbs
    model = randomize_(MMSegModel("fastvit_mci0", request.param, len(CLASSES)), seed=3).eval()
    path = runner_checkpoint(model, tmp_path_factory.mktemp("mmseg") / "iter_3.pth", CLASSES, PALETTE)
    return request.param, model, path


def test_mmseg_checkpoint_imports_to_the_logits_of_mmsegs_own_modules(capsys, mmseg_run, tmp_path):
    head, model, path = mmseg_run
    out = tmp_path / "imported.ckpt"
    rc, stdout, err = _cli(capsys, ["import", "mmseg", path, "--out", out])
    assert rc == 0, err
    assert f"mci0 + {head}, 6 classes" in stdout and "mmpretrain TIMMBackbone" in stdout and "0 left at init" in stdout
    task = read_checkpoint(out, "seg")
    assert task.class_names == CLASSES and task.palette == PALETTE and task.model.cfg.head == head
    x = _image()
    with torch.no_grad():
        ours, theirs = task.model(x), model(x)
    assert theirs.abs().max() > 0.1  # the perturbed weights give logits far from zero: a 1e-5 match says something
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("bgr_to_rgb", [True, False], ids=["rgb", "bgr"])
def test_the_files_input_normalisation_is_kept_in_the_model(capsys, tmp_path, bgr_to_rgb):
    """A model trained in mmseg on ImageNet's mean / std (mm configs' usual; MCi's own are 0 and 1), on RGB or BGR
    images: fed as its encoder is fed (the artifacts' input), it gives mmseg's logits; it goes back to mmseg with
    its data_preprocessor and comes again the same."""
    torch.manual_seed(3)
    mm = randomize_(MMSegModel("fastvit_mci0", "fpn", len(CLASSES)), seed=3).eval()
    pre = dict(type="SegDataPreProcessor", **IMAGENET, bgr_to_rgb=bgr_to_rgb, pad_val=0, seg_pad_val=255)
    path = runner_checkpoint(mm, tmp_path / "iter_3.pth", CLASSES, PALETTE, pre)
    rc, stdout, err = _cli(capsys, ["import", "mmseg", path, "--out", tmp_path / "a.ckpt"])
    assert rc == 0 and "renormalised in the model" in stdout and ("BGR" in stdout) != bgr_to_rgb, err
    task = read_checkpoint(tmp_path / "a.ckpt", "seg")
    rgb = torch.rand(1, 3, 96, 160, generator=torch.Generator().manual_seed(1))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (task.model.encoder.mean, task.model.encoder.std))
    pixels = 255 * (rgb if bgr_to_rgb else rgb.flip(1))
    mm_mean, mm_std = (torch.tensor(IMAGENET[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    theirs_in = (pixels - mm_mean) / mm_std
    with torch.no_grad():
        ours, theirs = task.model((rgb - mean) / std), mm(theirs_in)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    rc, _, err = _cli(capsys, ["export", "mmseg", "--checkpoint", tmp_path / "a.ckpt", "--out", tmp_path / "b.pth"])
    assert rc == 0, err
    written = torch.load(tmp_path / "b.pth", weights_only=True)["meta"]["mcq"]["data_preprocessor"]
    assert written == {"mean": IMAGENET["mean"], "std": IMAGENET["std"], "bgr_to_rgb": bgr_to_rgb}
    assert _cli(capsys, ["import", "mmseg", tmp_path / "b.pth", "--out", tmp_path / "c.ckpt"])[0] == 0
    assert read_checkpoint(tmp_path / "c.ckpt", "seg").model.cfg.input_norm == task.model.cfg.input_norm


def test_input_normalisation_is_read_from_either_generation_of_config_text():
    def pre(meta: dict) -> dict | None:
        return MMCheckpoint(Path("f.pth"), {}, meta).data_preprocessor

    old = "img_norm_cfg = dict(\n    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)\n"
    assert pre({"config": old + "model = dict(type='EncoderDecoder')"}) == {**IMAGENET, "bgr_to_rgb": True}
    assert pre({"cfg": "model = dict(data_preprocessor=dict(mean=[1, 2, 3], std=[4, 5, 6]))"}) == \
        {"mean": [1, 2, 3], "std": [4, 5, 6], "bgr_to_rgb": False}  # mmengine's default
    assert pre({"cfg": "model = dict(type='EncoderDecoder')"}) is None and pre({}) is None
    with pytest.raises(McqError, match="f.pth: meta's config gives no literal mean"):
        pre({"cfg": "model = dict(data_preprocessor=dict(mean=norm.mean, std=[4, 5, 6]))"})


def test_mobileclip_layout_backbone_imports_too(capsys, mmseg_run, tmp_path):
    """A backbone in MobileCLIP's own names (``backbone.network.*``), as its own model registered in mmseg has it;
    and no auxiliary head (configs without one): UperNet's is left at its initialisation, as only training uses it."""
    head, model, path = mmseg_run
    imported = tmp_path / "a.ckpt"
    assert _cli(capsys, ["import", "mmseg", path, "--out", imported])[0] == 0
    trunk = read_checkpoint(imported, "seg").model.encoder.trunk.state_dict()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(("backbone.", "auxiliary_head."))}
    state.update({"backbone." + k: v for k, v in timm_to_apple(trunk).items()})
    src = tmp_path / "mobileclip_layout.pth"
    torch.save({"meta": {"dataset_meta": {"classes": CLASSES, "palette": PALETTE}}, "state_dict": state}, src)
    rc, stdout, err = _cli(capsys, ["import", "mmseg", src, "--out", tmp_path / "b.ckpt"])
    assert rc == 0 and "MobileCLIP / ml-fastvit backbone" in stdout, err
    assert ("left at init (auxiliary_head)" if head == "upernet" else "0 left at init") in stdout
    x = _image()
    with torch.no_grad():
        torch.testing.assert_close(read_checkpoint(tmp_path / "b.ckpt", "seg").model(x), model(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("head", ["fpn", "upernet"])
def test_mcq_checkpoint_goes_to_mmseg_and_back_bit_for_bit(capsys, tmp_path, head):
    hparams = {"model": asdict(SegModelConfig("mci0", 4, head)), "class_names": CLASSES[:4],
               "optim": asdict(load_recipe("seg", head))}
    model = randomize_(task_spec("seg").build_model(hparams["model"]), seed=5).eval()
    src = write_checkpoint(tmp_path / "mcq.ckpt", model, hparams)
    rc, stdout, err = _cli(capsys, ["export", "mmseg", "--checkpoint", src, "--out", tmp_path / "mm.pth"])
    assert rc == 0 and "'type': 'mmpretrain.TIMMBackbone'" in stdout, err
    raw = torch.load(tmp_path / "mm.pth", weights_only=True)  # plain torch reads it: tensors, strings and numbers
    dataset_meta = raw["meta"]["dataset_meta"]
    assert list(dataset_meta["classes"]) == CLASSES[:4] and len(dataset_meta["palette"]) == 4
    mm = MMSegModel("fastvit_mci0", head, 4).eval()
    mm.load_state_dict(raw["state_dict"], strict=True)  # mmseg's modules take every key, and nothing is left over
    x = _image()
    with torch.no_grad():
        torch.testing.assert_close(mm(x), model(x), rtol=0, atol=1e-5)
    assert _cli(capsys, ["import", "mmseg", tmp_path / "mm.pth", "--out", tmp_path / "back.ckpt"])[0] == 0
    back = read_checkpoint(tmp_path / "back.ckpt", "seg")
    with torch.no_grad():
        assert torch.equal(back.model(x), model(x))
    assert back.class_names == CLASSES[:4]


def test_message_hub_reads_without_mmengine(mmseg_run, monkeypatch):
    """The Runner's file names numpy scalars and mmengine's HistoryBuffer: plain ``weights_only`` loading refuses
    it; mcq reads it with mmengine unimportable, through its stand-in."""
    _, model, path = mmseg_run
    with pytest.raises(Exception, match="Unsupported global"):
        torch.load(path, weights_only=True)
    for name in [m for m in sys.modules if m == "mmengine" or m.startswith("mmengine.")]:
        monkeypatch.setitem(sys.modules, name, None)
    ckpt = read_mm_checkpoint(path)
    assert ckpt.classes == CLASSES and ckpt.meta["iter"] == 3
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in model.state_dict().items())


class RunsCode:
    """Unpickling this runs ``os.system``: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class ReachesThroughGetattr:
    """Unpickling this calls ``getattr(numpy.ndarray, "tofile")``: the one ``getattr`` mmengine's files use, aimed
    elsewhere."""

    def __reduce__(self):
        return getattr, (np.ndarray, "tofile")


def test_bad_files_are_refused_in_one_line_with_nothing_written(capsys, mmseg_run, tmp_path):
    head, model, path = mmseg_run
    out = tmp_path / "out.ckpt"
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    runs_code, marker = tmp_path / "runs_code.pth", tmp_path / "ran"
    torch.save({"meta": {"x": RunsCode(marker)}, "state_dict": model.state_dict()}, runs_code)
    getattr_file = tmp_path / "getattr.pth"
    torch.save({"meta": {"x": ReachesThroughGetattr()}, "state_dict": model.state_dict()}, getattr_file)
    unknown = tmp_path / "unknown_backbone.pth"
    torch.save({"state_dict": {k.replace("backbone.timm_model.", "backbone.layers."): v
                               for k, v in model.state_dict().items()}}, unknown)
    fork_feat = tmp_path / "fork_feat.pth"  # ml-fastvit's per-output norms: no place in mcq's encoder
    torch.save({"state_dict": {**model.state_dict(), "backbone.timm_model.norm0.weight": torch.ones(64)}}, fork_feat)
    cases = [([truncated], "truncated.pth: cannot read checkpoint"),
             ([fork_feat], "(mmpretrain TIMMBackbone backbone), e.g. encoder.trunk.norm0.weight"),
             ([runs_code], "runs_code.pth: cannot read checkpoint: it holds Python objects that would run code"),
             ([getattr_file], "getattr.pth: cannot read checkpoint: it holds Python objects that would run code"),
             ([unknown], "unknown_backbone.pth: backbone layout not known (e.g. backbone.layers."),
             ([path, "--backbone", "mci1"], "weights do not fit mci1 + "),
             ([path, "--head", "upernet" if head == "fpn" else "fpn"], "weights do not fit mci0 + ")]
    for argv, message in cases:
        rc, _, err = _cli(capsys, ["import", "mmseg", *argv, "--out", out])
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert not out.exists() and not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fork_feat.pth", "getattr.pth", "runs_code.pth",
                                                          "truncated.pth", "unknown_backbone.pth"]


def test_imported_checkpoint_exports_checked_with_the_files_classes_and_palette(capsys, mmseg_run, synth_data,
                                                                                 tmp_path):
    _, _, path = mmseg_run
    ckpt, out = tmp_path / "imported.ckpt", tmp_path / "exports"
    assert _cli(capsys, ["import", "mmseg", path, "--out", ckpt])[0] == 0
    rc, _, err = _cli(capsys, ["export", "onnx", "--checkpoint", ckpt, "--data", synth_data, "--img-size", 64,
                               "--precision", "fp32", "--eval-images", 0, "--out", out, "--json", out / "report.json"])
    assert rc == 0, err
    (report,) = json.loads((out / "report.json").read_text())
    sidecar = json.loads(Path(report["path"] + ".json").read_text())
    assert report["status"] == "ok" and sidecar["parity"]["passed"]
    assert sidecar["class_names"] == CLASSES and sidecar["palette"] == PALETTE


def test_timm_backbone_of_the_whole_model_leaves_what_the_encoder_prunes_unused(capsys, mmseg_run, tmp_path):
    """``TIMMBackbone(features_only=False)`` holds timm's own names and the final conv the encoder prunes; a file
    without ``meta`` names its classes by index."""
    _, model, _ = mmseg_run
    full = randomize_(timm.create_model("fastvit_mci0", num_classes=0), seed=7)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    state.update({"backbone.timm_model." + k: v for k, v in full.state_dict().items()})
    torch.save({"state_dict": state}, tmp_path / "whole.pth")
    rc, stdout, err = _cli(capsys, ["import", "mmseg", tmp_path / "whole.pth", "--out", tmp_path / "a.ckpt"])
    assert rc == 0, err
    pruned = [k for k in full.state_dict() if k.startswith("final_conv.") and not k.endswith("num_batches_tracked")]
    assert int(re.search(r"(\d+) unused", stdout).group(1)) == len(pruned) > 0
    task = read_checkpoint(tmp_path / "a.ckpt", "seg")
    assert task.class_names == [f"class {i}" for i in range(len(CLASSES))]
    theirs = full.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in task.model.encoder.trunk.state_dict().items())


@pytest.mark.parametrize("name", ["mci0", "mci1", "mci2"])
def test_encoder_is_told_from_its_siblings_by_the_backbone_alone(name):
    """MCi0's blocks are a subset of MCi1's names: the extra blocks, not only missing ones, rule a sibling out."""
    with torch.device("meta"):
        timm_model = timm.create_model(f"fastvit_{name}", features_only=True)
    assert infer_encoder({"timm_model." + k: v for k, v in timm_model.state_dict().items()}) == name


def test_imported_checkpoint_fine_tunes_from_every_weight(capsys, synth_data, tiny_train_argv, tmp_path):
    """``mcq train seg --init IMPORTED.ckpt``: the whole model (encoder, neck, head) starts from the file, and
    its encoder and head are the file's, whatever --backbone says."""
    names = read_class_names(synth_data)
    torch.manual_seed(8)
    mm = randomize_(MMSegModel("fastvit_mci0", "upernet", len(names)), seed=8).eval()
    path = runner_checkpoint(mm, tmp_path / "iter_8.pth", names, [[i, i, i] for i in range(len(names))])
    imported = tmp_path / "imported.ckpt"
    assert _cli(capsys, ["import", "mmseg", path, "--out", imported])[0] == 0
    argv = [a if a != "mci0" else "mci2" for a in tiny_train_argv]  # the file's encoder wins
    rc, stdout, err = _cli(capsys, ["train", "seg", *argv, "--data", synth_data, "--init", imported, "--lr", 1e-9,
                                    "--out", tmp_path / "run"])
    assert rc == 0, err
    assert f"init {imported}: the whole model (mci0, an mcq seg checkpoint)" in stdout
    tuned = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", "seg")
    assert tuned.model.cfg.encoder == "mci0" and tuned.model.cfg.head == "upernet"
    start = read_checkpoint(imported, "seg").model.state_dict()
    for key in ("decode_head.conv_seg.weight", "encoder.trunk.stem.0.conv_kxk.0.conv.weight",
                "decode_head.fpn_bottleneck.conv.weight"):
        torch.testing.assert_close(tuned.model.state_dict()[key], start[key], rtol=0, atol=1e-6)
