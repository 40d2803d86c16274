"""``mcq.models.export_speed.faster_passes``: the same programs and int8 graphs, with less copying and exporting."""

import contextlib
import copy
import importlib

import torch
from torch.fx.traceback import NodeSource

from mcq.models import export_speed
from mcq.models.export_speed import PATTERN_USERS, _pattern_key, faster_passes
from mcq.models.pt2e import calibrate, prepared


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(self.norm(self.conv(x))).mean((2, 3))


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return _Net().eval()


def _program() -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    ep = torch.export.export(_net(), (torch.randn(1, 3, 16, 16),))
    return to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer


def _int8(monkeypatch, fast: bool) -> torch.fx.GraphModule:
    """The net's PT2E int8 graph (min-max), made with ``faster_passes`` or with it doing nothing."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from mcq.models import pt2e

    if not fast:
        monkeypatch.setattr(pt2e, "faster_passes", contextlib.nullcontext)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    graph = prepared(torch.export.export(_net(), (x,)).module(), "minmax")
    calibrate(graph, x)
    monkeypatch.undo()
    return convert_pt2e(graph)


def test_a_program_lowered_with_faster_passes_is_the_same_and_torch_is_left_as_it_was():
    source = NodeSource(None, "a pass")
    before = [importlib.import_module(m)._get_aten_graph_module_for_pattern for m in PATTERN_USERS]
    with faster_passes():
        assert copy.deepcopy(source) is source
        fast = _program()
    assert copy.deepcopy(source) is not source and "__deepcopy__" not in vars(NodeSource)
    assert [importlib.import_module(m)._get_aten_graph_module_for_pattern for m in PATTERN_USERS] == before
    assert fast == _program()


def test_int8_graphs_are_the_same_with_each_pattern_exported_once(monkeypatch):
    plain = _int8(monkeypatch, fast=False)
    export_speed._PATTERNS.clear()
    fast = _int8(monkeypatch, fast=True)
    made = len(export_speed._PATTERNS)
    again = _int8(monkeypatch, fast=True)
    assert made > 0 and len(export_speed._PATTERNS) == made  # the second graph exported no pattern
    x = torch.randn(1, 3, 16, 16)
    assert fast.code == plain.code == again.code and torch.equal(fast(x), plain(x))


def test_a_pattern_closing_over_a_tensor_or_a_list_is_not_reused():
    def over(value):
        return lambda x: x + value[0]

    example = (torch.zeros(2),)
    assert _pattern_key(over((1,)), example, False, {}) is not None
    assert _pattern_key(over(torch.ones(1)), example, False, {}) is None
    assert _pattern_key(over((torch.ones(1),)), example, False, {}) is None
    assert _pattern_key(over([1]), example, False, {}) is None
    assert _pattern_key(over((1,)), example, False, {}) != _pattern_key(over((2,)), example, False, {})
    assert _pattern_key(over((1,)), example, False, {}) != _pattern_key(over((1,)), (torch.zeros(3),), False, {})
