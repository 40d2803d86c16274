"""The segmentation heads are mmseg's: its module names and state-dict order (so that [mm-interop] maps checkpoints
key by key), UperNet's auxiliary head in training and nowhere else."""

import csv

import onnx
import pytest
import torch

from mcq.tasks.checkpoint import read_checkpoint
from mcq.train.config import TrainConfig
from mcq.train.train import train
from mcq.errors import McqError
from mcq.export.exporter import export_checkpoint
from mcq.models import create_seg_model
from mcq.models.inference import inference_form

from conftest import TINY_TRAIN

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _conv_bn(prefix: str) -> list[str]:
    """mmcv's ConvModule with BN: a bias-free ``conv`` then ``bn``."""
    return [f"{prefix}.conv.weight", *(f"{prefix}.bn.{k}" for k in BN)]


def _head_keys(model) -> list[str]:
    return [k for k in model.state_dict() if not k.startswith("encoder.")]


def test_semantic_fpn_has_the_keys_of_mmseg_fpn_and_fpn_head_in_their_order():
    """mmseg's ``fpn_r50_512x512_160k_ade20k``: FPN (4 lateral 1x1 then 4 3x3 convs, with biases), FPNHead
    (``conv_seg`` first, then scale heads of 1, 1, 2 and 3 ConvModules, upsamples between them)."""
    with torch.device("meta"):
        model = create_seg_model("mci0", 150, "fpn")
    expected = [f"neck.lateral_convs.{i}.conv.{p}" for i in range(4) for p in ("weight", "bias")]
    expected += [f"neck.fpn_convs.{i}.conv.{p}" for i in range(4) for p in ("weight", "bias")]
    expected += ["decode_head.conv_seg.weight", "decode_head.conv_seg.bias"]
    for prefix in ("0.0", "1.0", "2.0", "2.2", "3.0", "3.2", "3.4"):
        expected += _conv_bn(f"decode_head.scale_heads.{prefix}")
    assert _head_keys(model) == expected
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["neck.lateral_convs.3.conv.weight"] == (256, 512, 1, 1)  # MCi0's stride-32 level: 512 channels
    assert shapes["decode_head.scale_heads.3.4.conv.weight"] == (128, 128, 3, 3)
    assert shapes["decode_head.conv_seg.weight"] == (150, 128, 1, 1)
    assert model.auxiliary_head is None


def test_upernet_has_the_keys_of_mmseg_uper_head_and_its_auxiliary_fcn_head():
    """mmseg's ``upernet_swin_*_ade20k``: UPerHead of 512 channels, FCNHead of 256 on the stride-16 level."""
    with torch.device("meta"):
        model = create_seg_model("swin_l", 150, "upernet")
    expected = ["decode_head.conv_seg.weight", "decode_head.conv_seg.bias"]
    expected += [k for i in range(4) for k in _conv_bn(f"decode_head.psp_modules.{i}.1")]
    expected += _conv_bn("decode_head.bottleneck")
    expected += [k for i in range(3) for k in _conv_bn(f"decode_head.lateral_convs.{i}")]
    expected += [k for i in range(3) for k in _conv_bn(f"decode_head.fpn_convs.{i}")]
    expected += _conv_bn("decode_head.fpn_bottleneck")
    expected += ["auxiliary_head.conv_seg.weight", "auxiliary_head.conv_seg.bias", *_conv_bn("auxiliary_head.convs.0")]
    assert _head_keys(model) == expected
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["decode_head.bottleneck.conv.weight"] == (512, 1536 + 4 * 512, 3, 3)
    assert shapes["decode_head.fpn_bottleneck.conv.weight"] == (512, 4 * 512, 3, 3)
    assert shapes["auxiliary_head.convs.0.conv.weight"] == (256, 768, 3, 3)  # Swin-L's stride-16 level
    assert shapes["auxiliary_head.conv_seg.weight"] == (150, 256, 1, 1)


@pytest.mark.parametrize("head", ["fpn", "upernet"])
def test_every_level_reaches_the_logits_at_any_resolution(head):
    """Each pyramid level changes the output (no level is dropped), and the eval forward is the training one's
    main output."""
    torch.manual_seed(0)
    model = create_seg_model("mci0", 4, head).eval()
    x = torch.randn(1, 3, 64, 96)
    feats = [f.detach() for f in model.encoder(x)]
    neck = model.neck or (lambda f: f)
    with torch.no_grad():
        out = model.decode_head(neck(feats))
        assert out.shape == (1, 4, 16, 24)
        for i in range(len(feats)):
            changed = list(feats)
            changed[i] = changed[i] + 1.0
            assert not torch.allclose(model.decode_head(neck(changed)), out), f"level {i} does not reach the logits"
        assert torch.equal(model(x), model.forward_train(x)[0])


def test_upernet_trains_with_its_auxiliary_loss_and_exports_without_it(synth_data, tmp_path):
    run, _ = train(TrainConfig(task="seg", data=str(synth_data), out=str(tmp_path / "run"),
                               **{**TINY_TRAIN, "head": "upernet"}))
    rows = list(csv.DictReader((run / "logs" / "metrics.csv").open()))
    aux = [float(r["train/aux_loss"]) for r in rows if r.get("train/aux_loss")]
    main = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(aux) == TINY_TRAIN["max_steps"] and all(0 < a < m for a, m in zip(aux, main))

    ckpt = run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    aux_params = {k: v for k, v in state.items() if k.startswith("model.auxiliary_head.")}
    assert aux_params, "the checkpoint keeps the auxiliary head (training resumes with it)"
    reports = export_checkpoint(ckpt, ["onnx"], ["fp32"], out=tmp_path / "exports", data=synth_data, n_images=2,
                                eval_images=0)
    assert reports[0]["status"] == "ok", reports[0]
    graph = onnx.load(tmp_path / "exports" / reports[0]["artifact"]).graph
    n_weights = sum(int(torch.tensor(t.dims).prod()) for t in graph.initializer)
    model = read_checkpoint(ckpt, "seg").model
    total = sum(p.numel() for p in inference_form(model).parameters())
    n_aux = sum(p.numel() for p in model.auxiliary_head.parameters())
    assert n_weights <= total < n_weights + n_aux  # the artifact's weights are the model's without the head


def test_upernet_refuses_one_image_per_batch_in_one_line(synth_data, tmp_path):
    with pytest.raises(McqError, match="--batch-size 1 .*pyramid pooling"):
        train(TrainConfig(task="seg", data=str(synth_data), out=str(tmp_path / "run"),
                          **{**TINY_TRAIN, "head": "upernet", "batch_size": 1}))
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_from_before_these_heads_is_refused_in_one_line(trained_ckpt, tmp_path):
    ckpt = torch.load(trained_ckpt, map_location="cpu", weights_only=True)
    ckpt["state_dict"] = {k.replace("model.decode_head.", "model.decoder."): v for k, v in ckpt["state_dict"].items()}
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    with pytest.raises(McqError, match=r"old\.ckpt: written by mcq before its heads became mmseg's.*retrain"):
        read_checkpoint(old)
