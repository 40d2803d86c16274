"""ExecuTorch export: a .pte lowered to XNNPACK, checked against PyTorch, with its JSON sidecar; refusal of a bad one."""

import json

import numpy as np
import pytest

from mcq.export import executorch as et_format
from mcq.export.exporter import export_checkpoint
from mcq.tasks.processing import dataset_images
from mcq.tasks.metadata import sha256
from mcq.runtime.artifacts import open_model
from mcq.tasks.schema import read_sidecar
from mcq.runtime import executorch as et_rt
from mcq.runtime.backends import runner


def test_fp32_passes_and_carries_its_sidecar(executorch_seg, trained_ckpt, synth_data):
    out, reports = executorch_seg
    fp32 = next(r for r in reports if r["precision"] == "fp32")
    assert fp32["status"] == "ok", fp32
    assert fp32["parity"]["max_rel"] < 1e-3 and fp32["parity"]["agreement"] >= 0.999
    path = out / fp32["artifact"]
    assert path.suffix == ".pte" and path.is_file()
    sidecar = read_sidecar(path)  # checked against metadata.schema.json
    ckpt_classes = open_model(trained_ckpt).meta["class_names"]
    assert sidecar["class_names"] == ckpt_classes
    assert sidecar["input"]["shape"] == [1, 3, 64, 64]
    assert sidecar["source_checkpoint"]["sha256"] == sha256(trained_ckpt)
    assert sidecar["format"] == "executorch" and sidecar["precision"] == "fp32" and sidecar["parity"]["passed"]
    # the whole MCi0 SemanticFPN in one XNNPACK segment: attention and the FPN's nearest upsampling rewritten
    assert sidecar["delegation"] == fp32["delegation"]
    assert fp32["delegation"]["segments"] == 1 and fp32["delegation"]["ops_outside"] == {}, fp32["delegation"]
    assert {"scaled_dot_product_attention", "upsample_nearest2d"} <= set(fp32["delegation"]["rewrites"])
    opened = open_model(path)
    assert opened.runtime == "executorch"
    x = dataset_images(synth_data, "validation", 64, "mci0", 1).numpy()
    logits = opened.run(x)
    assert logits.shape == (1, len(ckpt_classes), 64, 64) and np.isfinite(logits).all()


def test_fp16_passes(executorch_seg):
    out, reports = executorch_seg
    fp16 = next(r for r in reports if r["precision"] == "fp16")
    assert fp16["status"] == "ok" and fp16["parity"]["agreement"] >= 0.99, fp16
    assert (out / fp16["artifact"]).is_file()


def test_int8_is_checked_and_kept_only_if_it_passes(executorch_seg):
    out, reports = executorch_seg
    int8 = next(r for r in reports if r["precision"] == "int8")
    agreement = int8["parity"]["agreement"]
    assert isinstance(agreement, float) and 0.0 <= agreement <= 1.0
    path = out / int8["artifact"]
    assert int8["delegation"]["segments"] == 1 and int8["delegation"]["ops_outside"] == {}, int8["delegation"]
    if int8["status"] == "ok":
        assert agreement >= 0.99 and path.is_file() and path.with_name(path.name + ".json").is_file()
    else:  # a two-step model's logits are nearly flat, so int8 may flip many argmaxes: it must be refused cleanly
        assert int8["status"] == "failed" and "agreement" in int8["why"], int8
        assert not path.exists() and not path.with_name(path.name + ".json").exists()
    assert not list(out.glob(".partial-*"))


def test_coreml_delegate_is_lowered_and_inspected(trained_ckpt, synth_data, tmp_path):
    """The Core ML delegate's program is written and checked; it cannot run here, and the report says so."""
    (report,) = export_checkpoint(trained_ckpt, ["executorch"], ["fp32"], out=tmp_path, data=synth_data, n_images=1,
                           options={"executorch": {"backend": "coreml"}})
    assert report["artifact"].endswith("_fp32-coreml.pte") and report["status"] == "ok (numerics not run here)", report
    path = tmp_path / report["artifact"]
    assert et_rt.delegates(path) == ["CoreMLBackend"]
    assert runner("executorch", path) is None
    assert "CoreMLBackend is not in this ExecuTorch runtime" in report["parity"]["numerics"]
    assert json.loads(path.with_name(path.name + ".json").read_text())["backend"] == "coreml"
    with pytest.raises(ValueError, match="Core ML delegate"):
        et_format.export(None, None, tmp_path / "x.pte", "int8", None, {}, backend="coreml")


def test_a_norm_whose_conv_has_other_users_survives_int8_preparation():
    """torchao's ``prepare_pt2e`` folds a batch norm into its conv even when the conv's output also feeds a residual
    (FastViT's attention stage does this); ``norms_as_convs`` keeps such a norm out of its reach, exactly."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from mcq.models.pt2e import norms_as_convs

    class ConvThenNormAndResidual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm = torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
            self.head = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1), torch.nn.BatchNorm2d(4))  # a safe fold

        def forward(self, x):
            x = self.conv(x)
            return self.head(x + self.norm(x))

    torch.manual_seed(0)
    model = ConvThenNormAndResidual()
    for bn in (model.norm, model.head[1]):
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(1, 4, 8, 8)
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config()).set_filter_function(lambda n: False)

    def prepared(m):  # nothing quantized: any change is the preparation's own
        with torch.no_grad():
            return prepare_pt2e(torch.export.export(m, (x,)).module(), quantizer)(x)

    with torch.no_grad():
        ref = model(x)
    fixed = norms_as_convs(model)
    assert isinstance(fixed.norm, torch.nn.Conv2d) and isinstance(fixed.head[1], torch.nn.BatchNorm2d)
    torch.testing.assert_close(prepared(fixed), ref, atol=1e-5, rtol=1e-5)
    # the upstream fold this works around; when torchao stops doing it, norms_as_convs can go
    assert (prepared(model) - ref).abs().max() > 1e-2
