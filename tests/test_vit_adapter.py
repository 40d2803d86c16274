"""ViT-Adapter: multi-scale deformable attention against a direct loop, through ONNX and ExecuTorch; a tiny
ViT-Adapter trains and exports."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mcq.models import create_encoder
from mcq.models.segmentor import SegModel, SegModelConfig
from mcq.models.vit_adapter import MSDeformAttn, ms_deform_attn, reference_points
from mcq.runtime.backends import runner

# ViT-Adapter's structure at toy widths: 4 ViT blocks, one per interaction
TINY = dict(embed_dim=48, depth=4, num_heads=3, interaction_indexes=((0, 0), (1, 1), (2, 2), (3, 3)),
            conv_inplane=8, deform_heads=3)


def _bilinear(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """img (D, H, W) at (x, y) in [0, 1] (edges of the border pixels), zero outside: the CUDA kernel's sampling."""
    d, h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(d, dtype=img.dtype)
    for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
        if 0 <= xi < w and 0 <= yi < h:
            out += (1 - abs(px - xi)) * (1 - abs(py - yi)) * img[:, yi, xi]
    return out


def test_ms_deform_attn_matches_a_direct_loop():
    torch.manual_seed(0)
    n, heads, d, q, points, shapes = 2, 2, 3, 5, 2, [(3, 4), (2, 2)]
    value = torch.randn(n, sum(h * w for h, w in shapes), heads, d, dtype=torch.float64)
    locations = torch.rand(n, q, heads, len(shapes), points, 2, dtype=torch.float64) * 1.4 - 0.2  # some outside
    weights = torch.rand(n, q, heads, len(shapes), points, dtype=torch.float64)
    out = ms_deform_attn(value, shapes, locations, weights)
    levels = value.split([h * w for h, w in shapes], dim=1)
    expected = torch.zeros(n, q, heads, d, dtype=torch.float64)
    for b in range(n):
        for i in range(q):
            for m in range(heads):
                for lv, (h, w) in enumerate(shapes):
                    img = levels[lv][b, :, m].T.reshape(d, h, w)
                    for p in range(points):
                        x, y = locations[b, i, m, lv, p].tolist()
                        expected[b, i, m] += weights[b, i, m, lv, p] * _bilinear(img, x, y)
    torch.testing.assert_close(out, expected.reshape(n, q, heads * d))


def test_zero_offsets_read_each_query_its_own_pixel():
    """One level, one point, no offsets, identity projections: the output is the input map, pixel for pixel."""
    dim, shape = 4, (3, 5)
    attn = MSDeformAttn(dim, levels=1, heads=2, points=1)
    with torch.no_grad():
        attn.sampling_offsets.bias.zero_()
        for proj in (attn.value_proj, attn.output_proj):
            proj.weight.copy_(torch.eye(dim))
    feat = torch.randn(2, shape[0] * shape[1], dim)
    with torch.no_grad():
        out = attn(torch.randn_like(feat), reference_points([shape]), feat, [shape])
    torch.testing.assert_close(out, feat)


def test_published_config():
    enc = create_encoder("vit_adapter_b")
    assert enc.trunk.embed_dim == 768 and len(enc.trunk.blocks) == 12 and enc.trunk.cls_token is None
    assert [list(g) for g in enc.adapter.groups] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    attn = enc.adapter.injectors[0].attn
    assert (attn.heads, attn.points, attn.levels, attn.value_proj.out_features) == (12, 4, 3, 384)
    assert enc.adapter.extractors[0].ffn.fc1.out_features == 192 and len(enc.adapter.extra_extractors) == 2
    seg = SegModel(SegModelConfig("vit_adapter_b", 150), encoder=enc)
    assert 131 < sum(p.numel() for p in seg.parameters()) / 1e6 < 134  # 134M published, with an auxiliary head


def test_tiny_forward_backward():
    torch.manual_seed(0)
    model = SegModel(SegModelConfig("vit_adapter_b", 5), encoder=create_encoder("vit_adapter_b", 0.1, **TINY))
    logits = model(torch.randn(2, 3, 64, 96))
    assert logits.shape == (2, 5, 64, 96)
    logits.logsumexp(1).mean().backward()
    enc = model.encoder
    for part in (enc.trunk, enc.adapter.spm, enc.adapter.extractors, enc.adapter.injectors):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def _onnx_matches_eager(model: torch.nn.Module, example: tuple, inputs: tuple, path) -> None:
    """``model`` through the dynamo ONNX exporter (dynamic batch) and onnxruntime, against eager on ``inputs``."""
    import onnxruntime as ort

    batch = torch.export.Dim("batch", min=1, max=8)
    torch.onnx.export(model, example, str(path), dynamo=True, dynamic_shapes=tuple({0: batch} for _ in example))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {i.name: x.numpy() for i, x in zip(sess.get_inputs(), inputs)})
    with torch.no_grad():
        ref = model(*inputs)
    np.testing.assert_allclose(outs[0], ref.numpy(), atol=1e-4, rtol=1e-4)


class _Attn(torch.nn.Module):
    """The first 16 tokens (a 4x4 map) attend to levels of 4x4 and 2x2 (random offsets and weights)."""

    shapes = [(4, 4), (2, 2)]

    def __init__(self):
        super().__init__()
        self.attn = MSDeformAttn(16, levels=2, heads=2, points=3, ratio=0.5)
        torch.nn.init.normal_(self.attn.sampling_offsets.weight)
        torch.nn.init.normal_(self.attn.attention_weights.weight)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.attn(feat[:, :16], reference_points(self.shapes[:1]), feat, self.shapes)


def test_ms_deform_attn_onnx_matches_eager(tmp_path):
    torch.manual_seed(0)
    _onnx_matches_eager(_Attn().eval(), (torch.randn(2, 20, 16),), (torch.randn(3, 20, 16),), tmp_path / "attn.onnx")


def test_ms_deform_attn_executorch_matches_eager(tmp_path):
    """grid_sample through mcq's ExecuTorch (XNNPACK) export: 2.4e-7 apart when measured."""
    from mcq.export import executorch as et_format

    torch.manual_seed(0)
    model, x = _Attn().eval(), torch.randn(1, 20, 16)
    et_format.export(model, x, tmp_path / "attn.pte", "fp32", None, {})
    out = runner("executorch", tmp_path / "attn.pte", 1)(x.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # about 3 minutes on one core
def test_tiny_seg_model_onnx_matches_eager(tmp_path):
    """The whole tiny ViT-Adapter + UperNet through mcq's ONNX export (a batch of two through the batch axis)."""
    import onnxruntime as ort

    from mcq.export import onnx as onnx_format
    from mcq.models.inference import inference_form

    torch.manual_seed(0)
    encoder = create_encoder("vit_adapter_b", **TINY)
    model = inference_form(SegModel(SegModelConfig("vit_adapter_b", 5), encoder=encoder))
    onnx_format.export(model, torch.randn(1, 3, 64, 64), tmp_path / "m.onnx", "fp32", None, {})
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    xs = torch.randn(2, 3, 64, 64)
    [out] = sess.run(None, {"image": xs.numpy()})
    with torch.no_grad():
        ref = model(xs).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)


def test_a_timm_vit_checkpoint_with_a_class_token_initialises_the_adapters_vit(tmp_path):
    """ViT-Adapter's ViT has no class token: an AugReg ViT-B/16 checkpoint (timm layout, 1 + 24x24 position
    embeddings) loads with its token and that token's position slot dropped."""
    import timm

    from mcq.models.clip_init import load_clip_init

    vit = timm.create_model("vit_base_patch16_384", pretrained=False, embed_dim=48, depth=4, num_heads=3)
    torch.save(vit.state_dict(), tmp_path / "augreg.pt")
    encoder = create_encoder("vit_adapter_b", **TINY)
    report = load_clip_init(encoder, tmp_path / "augreg.pt")
    assert not report.missing and not report.mismatched and "cls_token" not in report.unexpected
    torch.testing.assert_close(encoder.trunk.pos_embed, vit.pos_embed[:, 1:])
    torch.testing.assert_close(encoder.trunk.blocks[3].mlp.fc2.weight, vit.blocks[3].mlp.fc2.weight)


@pytest.mark.parametrize("name", ["vit_adapter_b", "vit_b16"])
def test_a_vit_fixed_to_its_input_size_computes_the_same_without_resampling_in_the_graph(name):
    """``inference_form(model, size)`` resamples a ViT's position embedding once: the same outputs, and the exported
    graph holds no antialiased bicubic resize (ExecuTorch has no kernel for it)."""
    from mcq.models.inference import inference_form

    torch.manual_seed(0)
    encoder = create_encoder(name, **(TINY if name == "vit_adapter_b" else {}))
    model = SegModel(SegModelConfig(name, 5), encoder=encoder)
    x = torch.randn(1, 3, 64, 96)
    dynamic, fixed = inference_form(model), inference_form(model, (64, 96))

    def ops(m):
        return {str(n.target) for n in torch.export.export(m, (x,)).run_decompositions({}).graph.nodes}

    with torch.no_grad():
        torch.testing.assert_close(fixed(x), dynamic(x), atol=1e-5, rtol=1e-5)
    if name == "vit_adapter_b":  # the whole export of ViT-B/16 takes half a minute; its eager check is above
        assert any("bicubic" in op for op in ops(dynamic))
        assert not any("bicubic" in op for op in ops(fixed))
