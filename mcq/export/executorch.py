"""ExecuTorch: a ``.pte`` program lowered to the XNNPACK delegate, run by the ExecuTorch Python runtime.

fp16 casts weights and compute to half inside the graph (input and output stay float32); XNNPACK takes
the convolutions, while ops it has no fp16 kernel for (GELU) run as portable kernels between delegate calls.
int8 is PT2E static quantization with the XNNPACK quantizer (symmetric, per-channel weights) calibrated on
dataset images. A ``.pte`` has no room for free-form metadata, so ``meta`` lives only in the JSON sidecar.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np
import torch

DEFAULT_PRECISION = "fp32"
PRECISIONS = ("fp32", "fp16", "int8")


class _Half(torch.nn.Module):
    """``model`` in half precision behind a float32 input and output."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model).half()  # a copy: the caller's model stays float32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


def _quantized(model: torch.nn.Module, example: torch.Tensor, calib: torch.Tensor) -> torch.nn.Module:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, (example,)).module(), quantizer)
    with torch.no_grad():
        for x in calib:
            prepared(x[None])
    return convert_pt2e(prepared)


def export(model, example: torch.Tensor, path: Path, precision: str, calib: torch.Tensor | None, meta: dict) -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if precision not in PRECISIONS:
        raise ValueError(f"ExecuTorch precision {precision!r} not supported ({', '.join(PRECISIONS)})")
    if precision == "int8":
        if calib is None or not len(calib):
            raise ValueError("ExecuTorch int8 needs calibration images")
        model = _quantized(model, example, calib)
    elif precision == "fp16":
        model = _Half(model).eval()
    ep = torch.export.export(model, (example,))
    program = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    Path(path).write_bytes(program.buffer)


def runner(path: Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    from executorch.runtime import Runtime

    runtime = Runtime.get()
    if threads:
        # XNNPACK's threadpool is process-wide: the last runner opened with ``threads`` sets it for all.
        from executorch.extension.pybindings import portable_lib

        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)
    program = runtime.load_program(str(path))
    method = program.load_method("forward")

    def run(x: np.ndarray) -> np.ndarray:
        out = method.execute([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))])[0]
        return out.numpy().copy()

    run.runtime, run.program, run.method = runtime, program, method  # kept alive as long as ``run`` is
    return run
