"""The rewrites that keep a graph inside the XNNPACK delegate compute the same function, and leave no op outside."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcq.models.delegation import delegation, for_xnnpack
from mcq.runtime.backends import runner

aten = torch.ops.aten


class EveryRewrittenOp(nn.Module):
    """One of each op that ExecuTorch 1.5.1's XNNPACK partitioner leaves outside, in the shapes mcq's models have."""

    def __init__(self, dim: int = 16, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.proj = nn.Conv2d(3, dim, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        b, c, h, w = x.shape
        tokens = torch.roll(self.norm(x.flatten(2).transpose(1, 2)).view(b, h, w, c), shifts=(-2, 3), dims=(1, 2))
        tokens = torch.cat([self.cls.expand(b, -1, -1), tokens.reshape(b, h * w, c)], 1)
        q, k, v = self.qkv(tokens).reshape(b, -1, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        fused = F.scaled_dot_product_attention(q, k, v)
        plain = (q @ k.transpose(-2, -1)).softmax(-1) @ v
        y = (fused + plain).transpose(1, 2).reshape(b, -1, c)[:, 1:].transpose(1, 2).reshape(b, c, h, w)
        pooled = F.interpolate(F.adaptive_avg_pool2d(y, 3), size=(h, w), mode="bilinear", align_corners=False)
        up = F.interpolate(y + pooled, scale_factor=2, mode="nearest") + F.interpolate(y, size=(2 * h, 2 * w))
        return up


def _targets(ep) -> set[str]:
    return {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}


@pytest.fixture(scope="module")
def model_and_input():
    torch.manual_seed(0)
    return EveryRewrittenOp().eval(), torch.randn(1, 3, 20, 20)  # 10x10 tokens: pooled to 3x3, not a divisor


def test_rewrites_compute_the_same_function(model_and_input):
    model, x = model_and_input
    ep, done = for_xnnpack(model, x)
    assert done == {"upsample_nearest2d": 2, "layer_norm": 1, "roll": 1, "scaled_dot_product_attention": 1,
                    "matmul": 2, "unbind": 1, "adaptive_avg_pool2d": 1, "expand": 1}, done
    left = {t for t in _targets(ep) if any(op in t for op in ("nearest", "layer_norm", "roll", "scaled_dot", "matmul",
                                                               "unbind", "adaptive", "expand"))}
    assert not left, left
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), model(x), atol=1e-5, rtol=1e-5)
        x2 = torch.randn_like(x)
        torch.testing.assert_close(ep.module()(x2), model(x2), atol=1e-5, rtol=1e-5)


def test_an_op_outside_its_rewrite_is_left_as_it_is():
    class Odd(nn.Module):
        def forward(self, x):  # a non-integer nearest scale and a flat roll: no exact rewrite
            return torch.roll(F.interpolate(x, size=(5, 5), mode="nearest"), 3)

    x = torch.randn(1, 2, 3, 3)
    ep, done = for_xnnpack(Odd(), x)
    assert not done and {"aten.upsample_nearest2d.vec", "aten.roll.default"} <= _targets(ep)
    torch.testing.assert_close(ep.module()(x), Odd()(x))


def test_the_rewritten_graph_lowers_whole_into_one_delegate_segment(model_and_input):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    model, x = model_and_input

    def lowered(ep):
        return delegation(to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).exported_program()
                          .graph_module)

    before = lowered(torch.export.export(model, (x,)))
    assert before["segments"] > 1 and {"upsample_nearest2d_vec", "native_layer_norm_default"} <= set(
        before["ops_outside"]), before
    after = lowered(for_xnnpack(model, x)[0])
    assert after["segments"] == 1 and after["ops_outside"] == {}, after


class SharedConvAndBuiltMask(nn.Module):
    """ViT-Adapter's one depthwise conv on two maps, Swin's mask built in every call with slice assignments, and a
    zero-width pad (Swin's patch merging on an even map)."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 3, padding=1)
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.out = nn.Conv2d(dim, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        mask = torch.zeros(1, 1, *x.shape[-2:])
        mask[..., :2, :] = 1.0
        mask[..., :, -3:] = 2.0
        x = F.pad(x + mask.masked_fill(mask == 1.0, -0.5), (0, 0, 0, 0))
        return self.out(self.dwconv(x) + F.interpolate(self.dwconv(F.max_pool2d(x, 2)), scale_factor=2))


def test_the_mask_is_folded_as_it_is_at_its_use_and_a_zero_pad_dropped():
    torch.manual_seed(0)
    model, x = SharedConvAndBuiltMask().eval(), torch.randn(1, 3, 12, 12)
    ep, done = for_xnnpack(model, x)
    assert done["constants"] >= 1 and done["pad"] == 1 and done["upsample_nearest2d"] == 1, done
    assert not {t for t in _targets(ep) if any(op in t for op in ("zeros", "fill", "copy", "masked", "pad"))}
    torch.testing.assert_close(ep.module()(x), model(x), atol=1e-6, rtol=1e-6)


def test_a_shared_conv_weight_is_copied_per_conv_and_the_int8_program_loads(tmp_path):
    from mcq.export import executorch as et_format
    from mcq.models.delegation import unshare_weights

    torch.manual_seed(0)
    model, x = SharedConvAndBuiltMask().eval(), torch.randn(1, 3, 12, 12)
    gm = torch.export.export(model, (x,)).module()
    assert unshare_weights(gm) == 2  # the second dwconv's weight and bias
    convs = [n for n in gm.graph.nodes if n.target == aten.conv2d.default]
    assert len({c.args[1] for c in convs}) == len({c.args[2] for c in convs}) == len(convs) == 4
    torch.testing.assert_close(gm(x), model(x))
    facts = et_format.export(model, x, tmp_path / "m.pte", "int8", torch.randn(4, 3, 12, 12), {})
    assert facts["delegation"]["segments"] == 1 and facts["delegation"]["ops_outside"] == {}, facts
    assert facts["delegation"]["rewrites"]["unshared_weights"] == 2 and facts["delegation"]["rewrites"]["pad"] == 1
    out = runner("executorch", tmp_path / "m.pte")(x.numpy())  # XNNPACK 1.5.1 refused a shared quantized weight here
    assert out.shape == (1, 3, 12, 12) and float(abs(out - model(x).detach().numpy()).max()) < 0.2


def test_the_terminal_line_names_the_segments_and_what_ran_outside():
    from mcq.models.delegation import format_delegation

    whole = {"segments": 1, "delegated_ops": 344, "ops_outside": {}, "rewrites": {}}
    assert format_delegation("m.pte", whole) == "m.pte: 1 delegate segment, 344 ops delegated; nothing outside"
    split = {**whole, "segments": 3, "ops_outside": {"index_tensor": 8, "grid_sampler_2d_default": 18}}
    assert format_delegation("m.pte", split).endswith("3 delegate segments, 344 ops delegated; outside: "
                                                      "grid_sampler_2d_default x18, index_tensor x8")
