"""ExecuTorch: a ``.pte`` program lowered to the XNNPACK delegate, run by the ExecuTorch Python runtime.

Before lowering, the graph is rewritten so that XNNPACK takes all of it (``mcq.models.delegation``: exact rewrites
of the ops it has no kernel for); ``export`` returns what it took, segment by segment, and what stayed outside,
which the report and the sidecar carry as ``delegation``.

fp16 casts weights and compute to half inside the graph (input and output stay float32); XNNPACK takes
the convolutions, while ops it has no fp16 kernel for (GELU) run as portable kernels between delegate calls.
int8 is PT2E static quantization with the XNNPACK quantizer (symmetric, per-channel weights) calibrated on
dataset images with one of torchao's activation observers (``CALIBRATIONS``; given the exporter's parity check,
``calibration="auto"`` tries each in order of cost, then modules are kept float by measurement, each trial on the
converted graph in PyTorch and only the one kept lowered: ``mcq.export.quantization.confirmed_search``), after
working around a batch-norm fold of torchao's that changes the model (``mcq.models.pt2e.norms_as_convs``) and two
graphs XNNPACK 1.5.1 refuses at load (``XNNCompiler::compileModel failed: 0x1``): a conv weight shared by
several convs (ViT-Adapter) is copied per conv, and identity ops (Swin's zero-width pads) are dropped before PT2E
observes them. The rewrites for the delegate run on the converted graph, so layer norm and softmax stay float.
A ``.pte`` has no room for free-form metadata, so ``meta`` lives only in the JSON sidecar.

``backend="coreml"`` lowers to ExecuTorch's Core ML delegate instead (fp32, fp16). The program is written
here, but its delegate runs only on Apple devices: ``runner`` is None where the runtime lacks a backend the
program needs, and ``inspect`` checks what can be checked without it.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Callable

import torch

from mcq.models.delegation import delegation, for_xnnpack
from mcq.models.export_speed import faster_passes
from mcq.models.pt2e import CALIBRATIONS, calibrate, for_quantization, observers, prepared, qat_int8
from mcq.export.quantization import (
    Check, Int8Refused, Quantize, Unmade, confirmed_search, full_int8, methods_for, qat_facts, speed_cost,
)
from mcq.runtime.artifacts import torch_runner
from mcq.runtime.backends import runner

DEFAULT_PRECISION = "fp32"
PRECISIONS = ("fp32", "fp16", "int8")
QAT_BY_DEFAULT = True  # a quantization-aware checkpoint's int8 takes its learnt ranges unless a calibrator is named
BACKENDS = ("xnnpack", "coreml", "portable")
# int8 trials run on the converted PT2E graph in PyTorch; only the one kept is lowered. Lowering an MCi0 SemanticFPN
# takes 30-40 s whatever the input size (fp32, a 2-core Intel Xeon), against 1 s (64 px) to 25 s (512 px, 4 images) for
# the graph's check, and the two agree closely: 99.970% of pixels for the graph, 99.967% for its program (512 px;
# executorch 1.5.1).
STAND_IN = "the converted PT2E graph in PyTorch"


def _float(t: torch.Tensor) -> torch.Tensor:
    """A half tensor as float32; integers (labels) as they are."""
    return t.float() if t.is_floating_point() else t


class _Half(torch.nn.Module):
    """``model`` in half precision behind a float32 input and output (an integer output stays as it is)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model).half()  # a copy: the caller's model stays float32

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.model(x.half())
        return tuple(map(_float, out)) if isinstance(out, tuple) else _float(out)


def _partitioners(backend: str) -> list:
    if backend == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return [XnnpackPartitioner()]
    if backend == "coreml":
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner

        return [CoreMLPartitioner()]
    if backend == "portable":
        import executorch.kernels.quantized  # noqa: F401  (out variants of quantize / dequantize, for int8)

        return []
    raise ValueError(f"ExecuTorch backend {backend!r} not supported ({', '.join(BACKENDS)})")


def _lower(model: torch.nn.Module, before: Counter, example: torch.Tensor, path: Path, backend: str,
           rewrite: bool) -> dict:
    """Lower ``model`` (float, half or PT2E int8) to ``backend`` and write the program; its delegation facts."""
    from executorch.exir import to_edge_transform_and_lower

    with faster_passes():
        if backend == "xnnpack" and rewrite:
            ep, rewrites = for_xnnpack(model, example)
        else:
            ep, rewrites = torch.export.export(model, (example,)), Counter()
        edge = to_edge_transform_and_lower(ep, partitioner=_partitioners(backend))
        info = {**delegation(edge.exported_program().graph_module), "rewrites": dict(before + rewrites)}
        Path(path).write_bytes(edge.to_executorch().buffer)
    return info


def export(model, example: torch.Tensor, path: Path, precision: str, calib: torch.Tensor | None, meta: dict,
           backend: str = "xnnpack", rewrite: bool = True, calibration: str = "auto", int8_fallback: str = "auto",
           check: Check | None = None, qat: dict[str, torch.Tensor] | None = None,
           float_modules: tuple[str, ...] = ()) -> dict:
    """Write the program; returns ``{"delegation": ...}``: the delegate's segments, the ops left outside them and
    the rewrites that kept the others in (``mcq.models.delegation``; ``rewrite=False`` lowers the graph as
    ``torch.export`` gives it, to measure what they gain). int8 also returns ``{"int8": ...}``: with ``check``
    (the parity check of a program), ``calibration="auto"`` tries the observers of ``CALIBRATIONS`` in order
    until one passes and ``int8_fallback="auto"`` keeps modules float until one does (``mcq.export.quantization``);
    without it, ``auto`` is the quantizer's default, histogram, with ``float_modules`` kept float (``--explain``
    repeating a program's int8). With ``qat`` (the state of quantization-aware
    training, ``mcq.models.pt2e``), int8 takes its weights and ranges and nothing is calibrated."""
    if precision not in PRECISIONS:
        raise ValueError(f"ExecuTorch precision {precision!r} not supported ({', '.join(PRECISIONS)})")
    if backend == "coreml" and precision == "int8":
        raise ValueError("int8 with the Core ML delegate is not supported here; use `mcq export coreml --precision "
                         "int8` (weight compression) or the XNNPACK delegate")
    if precision == "fp16":
        return {"delegation": _lower(_Half(model).eval(), Counter(), example, path, backend, rewrite)}
    if precision == "fp32":
        return {"delegation": _lower(model, Counter(), example, path, backend, rewrite)}
    if qat is not None:
        converted, before = qat_int8(model, qat, example)
        return {"delegation": _lower(converted, before, example, path, backend, rewrite), "int8": qat_facts()}
    if calib is None or not len(calib):
        raise ValueError("ExecuTorch int8 needs calibration images")
    methods = methods_for(calibration, tuple(CALIBRATIONS), "executorch")
    with tempfile.TemporaryDirectory() as tmp:
        convert, lower, lowered = _int8_trials(model, example, calib, backend, rewrite, Path(tmp))
        if check is None:
            method = "histogram" if calibration == "auto" else methods[0]
            made = lower(convert(method, float_modules))
            shutil.move(made, path)
            return {"delegation": lowered[made], "int8": {"calibration": method, "float_modules": list(float_modules)}}
        found = confirmed_search((convert, lambda graph: check(torch_runner(graph))), lower,
                                 lambda made: check(runner("executorch", made)), methods, model,
                                 int8_fallback == "auto", STAND_IN)
        if not found.best.parity["passed"]:
            raise Int8Refused(found, {"delegation": lowered[found.best.artifact]})
        facts = found.facts()
        if found.best.float_modules:
            fp32, full = Path(tmp) / "fp32.pte", full_int8(found).artifact
            _lower(model, Counter(), example, fp32, backend, rewrite)
            full = full if isinstance(full, Path) else lower(full)
            runs = {"fp32": fp32, "int8": full, "this": found.best.artifact}
            facts["latency_ms"] = speed_cost({k: runner("executorch", v) for k, v in runs.items()}, example)
        shutil.move(found.best.artifact, path)
    return {"delegation": lowered[found.best.artifact], "int8": facts}


def _int8_trials(model: torch.nn.Module, example: torch.Tensor, calib: torch.Tensor, backend: str, rewrite: bool,
                 tmp: Path) -> tuple[Quantize, Callable[[torch.fx.GraphModule], Path], dict[Path, dict]]:
    """For ``mcq.export.quantization``: ``convert(method, float_modules)``, the converted PT2E graph (the stand-in
    of a program), and ``lower(graph)``, that graph lowered into a program in ``tmp``; and the delegation facts of
    each program. Each calibrator runs once, on the whole model; a graph with modules kept
    float takes the ranges of that run, observer by observer (the same node observed), without calibrating again."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    graph, before = for_quantization(model, example)
    calibrated: dict[str, dict[str, torch.nn.Module]] = {}
    lowered: dict[Path, dict] = {}

    def convert(method: str, float_modules: tuple[str, ...]) -> torch.fx.GraphModule:
        if method not in calibrated:
            full = prepared(graph, method)
            calibrate(full, calib)
            calibrated[method] = observers(full)
        trial = prepared(graph, method, float_modules)
        for name, observer in observers(trial).items():
            observer.load_state_dict(calibrated[method][name].state_dict())
        with faster_passes():
            return convert_pt2e(trial)

    def lower(graph: torch.fx.GraphModule) -> Path:
        out = tmp / f"int8-{len(lowered)}.pte"
        try:
            lowered[out] = _lower(graph, before, example, out, backend, rewrite)
        except Exception as e:
            # executorch 1.5.1: XNNPACK's ChannelsLastTaggedReshapePass asserts ("Attempting to convert non-NHWC
            # compatible node to NHWC"), wrapped by torch's PassManager in a bare Exception, on some mixes of int8
            # and float modules that their stand-in ran (on the tiny seg model of tests/conftest.py trained with
            # exact-resume sampling, the set the search kept): a failed trial. Anything else is raised as it is.
            if not isinstance(e.__cause__ or e, AssertionError):
                raise
            raise Unmade(f"XNNPACK lowering failed: {e.__cause__ or e}") from e
        return out

    return convert, lower, lowered


