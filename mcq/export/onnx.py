"""ONNX: one self-contained file from the dynamo exporter, checked by ``onnx.checker``, run by onnxruntime.

fp16 converts weights and compute (inputs and outputs stay float32); int8 is onnxruntime's static QDQ
quantization (per-channel weights) calibrated on dataset images.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch

DEFAULT_PRECISION = "fp32"
OPSET = 18


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a tensor of images."""

    def __init__(self, images: torch.Tensor):
        self._it = iter([{"image": x[None].numpy()} for x in images])

    def get_next(self):
        return next(self._it, None)


def _sorted(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Topologically sort the graph (the fp16 converter appends its input casts after their users)."""
    import onnx_ir as ir

    model = ir.from_proto(proto)
    model.graph.sort()
    return ir.to_proto(model)


def _export_fp32(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.onnx.export(
        model, (example,), str(path), dynamo=True, external_data=False, opset_version=OPSET,
        input_names=["image"], output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False,
    )


def export(model, example: torch.Tensor, path: Path, precision: str, calib: torch.Tensor | None, meta: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        _export_fp32(model, example, fp32)
        if precision == "fp32":
            proto = onnx.load(fp32)
        elif precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            proto = onnx.load(fp32)
            del proto.graph.value_info[:]  # stale fp32 annotations would contradict the converted types
            proto = _sorted(convert_float_to_float16(proto, keep_io_types=True))
        elif precision == "int8":
            from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

            pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(q), _Calibration(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            proto = onnx.load(q)
        else:
            raise ValueError(f"ONNX precision {precision!r} not supported (fp32, fp16, int8)")
    onnx.helper.set_model_props(proto, {"mcq": json.dumps(meta)})
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def runner(path: Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def read_metadata(path: Path) -> dict:
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props["mcq"])
