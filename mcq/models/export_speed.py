"""``faster_passes()``: two workarounds that make the graph passes of PT2E quantization and ExecuTorch lowering
cheaper without changing what they make (the programs and graphs are the same, ``tests/test_export_speed.py``).

- Provenance (torch 2.14.1): each node records where it came from (``node.meta["from_node"]``, a list of
  ``torch.fx.traceback.NodeSource`` trees), and each pass that rebuilds a node deep-copies that history, which grows
  with every pass. A ``NodeSource`` is never changed once made (torch builds new ones and replaces or appends to the
  list itself), so here a deep copy shares it. An MCi0 SemanticFPN lowers to XNNPACK in 30.7 s instead of 36.9 s
  (fp32) and 49.7 s instead of 59.6 s (int8; 64 px, one thread of a 2-core Intel Xeon, 2026-12-07).
- Patterns (torchao 0.18, executorch 1.5.1): the XNNPACK quantizer's annotation and torchao's conv-batch-norm fuse
  and fold export the same small pattern functions with ``torch.export`` at every call (12 in each ``prepare_pt2e``,
  132 in ``mcq.models.pt2e.qat_int8``), half a second each. Here each pattern is exported once per process and
  copied after: a pattern is keyed by its code, the values it closes over (hashable, not tensors) and its example
  inputs' shapes, dtypes and devices (their values do not shape the graph). After the first call in a process,
  ``prepared`` takes 0.8 s instead of 2.7-3.5 s and ``qat_int8`` 13.2 s instead of 38.7 s (the tiny MCi0 of the
  tests at 64 px, one thread, 2026-12-07; the first call takes 6 s and 40 s either way).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import FunctionType
from typing import Any, Callable, Hashable
from unittest.mock import patch

import torch
from torch.fx.traceback import NodeSource
from torch.utils._pytree import tree_leaves

# the modules that call torchao's pattern export by a name of their own (``from ... import``)
PATTERN_USERS = ("torchao.quantization.pt2e.utils", "torchao.quantization.pt2e.qat_utils",
                 "executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils")
_PATTERNS: dict[Hashable, torch.fx.GraphModule] = {}


@contextmanager
def faster_passes() -> Iterator[None]:
    """Within the block, provenance is shared and pattern graphs are reused (see the module's docstring)."""
    reusing = _reusing(importlib.import_module(PATTERN_USERS[0])._get_aten_graph_module_for_pattern)
    with ExitStack() as stack:
        stack.enter_context(patch.object(NodeSource, "__deepcopy__", lambda self, memo: self, create=True))
        for name in PATTERN_USERS:
            stack.enter_context(patch.object(importlib.import_module(name), "_get_aten_graph_module_for_pattern",
                                             reusing))
        yield


def _reusing(export: Callable[..., torch.fx.GraphModule]) -> Callable[..., torch.fx.GraphModule]:
    """``export`` (torchao's ``_get_aten_graph_module_for_pattern``) exporting each pattern once; a copy after."""

    def exported(pattern: Callable, example_inputs: tuple, is_cuda: bool = False, **kwargs) -> torch.fx.GraphModule:
        key = _pattern_key(pattern, example_inputs, is_cuda, kwargs)
        if key is None:
            return export(pattern, example_inputs, is_cuda, **kwargs)
        if key not in _PATTERNS:
            _PATTERNS[key] = export(pattern, example_inputs, is_cuda, **kwargs)
        return copy.deepcopy(_PATTERNS[key])

    return exported


def _pattern_key(pattern: Callable, example_inputs: tuple, is_cuda: bool, kwargs: dict) -> Hashable | None:
    """What the exported graph of ``pattern`` depends on; ``None`` where that cannot be told (a pattern that is
    not a plain function or a ``WrapperModule`` of one, or that closes over a tensor or an unhashable value)."""
    from torchao.quantization.pt2e import WrapperModule

    fn = pattern.fn if isinstance(pattern, WrapperModule) else pattern
    if not isinstance(fn, FunctionType):
        return None
    try:
        closed = tuple(cell.cell_contents for cell in fn.__closure__ or ())
        defaults = fn.__defaults__, tuple(sorted((fn.__kwdefaults__ or {}).items()))
        if any(isinstance(v, torch.Tensor) for v in tree_leaves((closed, defaults))):
            return None
        key = (type(pattern), fn.__code__, closed, defaults, tuple(map(_described, example_inputs)), is_cuda,
               tuple(sorted((k, _described(v)) for k, v in kwargs.items())))
        hash(key)
    except (TypeError, ValueError):  # an unhashable value; an empty cell
        return None
    return key


def _described(value: Any) -> Any:
    """An example input as a key: a tensor by its shape, dtype and device; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return "tensor", tuple(value.shape), value.dtype, value.device.type
    return value
