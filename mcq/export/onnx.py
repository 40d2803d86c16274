"""ONNX: one self-contained file from the dynamo exporter, checked by ``onnx.checker``, run by onnxruntime.

fp16 converts weights and compute (inputs and outputs stay float32); int8 is onnxruntime's static QDQ
quantization (per-channel weights) calibrated on dataset images with one of onnxruntime's calibrators
(``CALIBRATIONS``; given the exporter's parity check, ``mcq.export.quantization.search`` picks the calibrator and
the modules kept float, which are ``nodes_to_exclude`` here; a quantization-aware checkpoint's int8 is instead the
QDQ graph of its PT2E int8 model, ``mcq.models.pt2e``), with two changes that make it pay off on CPUs
(measured in ``benchmarks/export_latency.py``): grouped convolutions with more than one output channel per group
(FastViT's stride-2 7x7 patch embedding) become depthwise convolutions on repeated channels, for which
onnxruntime has a fast int8 kernel (it has none for the grouped form), and the final upsampling of the logits
stays in float (in uint8 it runs at full resolution with a quantize and dequantize around it), and so does the
argmax after it in a labels artifact (``mcq.export.labels``), which runs as ``TopK`` on logits made
classes-last before the upsampling (``_argmax_as_topk``, ``_transpose_before_resize``).

Mask R-CNN (det, ``meta["graph"] == "full"``) exports with the TorchScript-based exporter (``dynamo=False``):
the dynamo exporter fails in torchvision's ``batched_nms``. Batch 1; the number of detections is dynamic.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable
from unittest.mock import patch

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from mcq.models.pt2e import keeps_float, qat_int8
from mcq.runtime.backends import runner
from mcq.export.quantization import (
    Check, Int8Refused, full_int8, methods_for, qat_facts, search, speed_cost,
)

DEFAULT_PRECISION = "fp32"
OPSET = 18
# onnxruntime's calibrators (``CalibrationMethod``), in order of cost: MinMax takes each tensor's range; Percentile
# and Entropy build a histogram of every tensor first (about 7x MinMax's time for an MCi0 at 512 px)
CALIBRATIONS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
# A quantization-aware checkpoint's int8 is calibrated like any other (on its fine-tuned weights) unless asked for
# ``--calibration qat``: PT2E's QDQ graph quantizes a conv's output only where XNNPACK would, and onnxruntime 1.32
# fuses a conv into QLinearConv only with its output quantized: 33 of 110 convs of an MCi0 SemanticFPN, 322 ms
# against 318 for fp32 and 152 for onnxruntime's own int8 of the same weights (99.29% / 99.27% of pixels;
# benchmarks/export_latency.py --checkpoint QAT --skip-auto at 512 px, 2 threads). Other runtimes that fuse QDQ
# graphs whole (TensorRT) take it as it is.
QAT_BY_DEFAULT = False


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a tensor of images, with the ``set_range`` that its
    ``CalibStridedMinMax`` option uses to calibrate one image at a time."""

    def __init__(self, images: torch.Tensor):
        self.feeds = [{"image": x[None].numpy()} for x in images]
        self.set_range(0, len(self.feeds))

    def __len__(self) -> int:
        return len(self.feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self.feeds[start_index:end_index])

    def get_next(self):
        return next(self._it, None)


class _RepeatedDepthwise(nn.Module):
    """A conv with ``groups == in_channels`` and k > 1 outputs per group, as the same weights applied
    depthwise to the input with each channel repeated k times (equal in exact arithmetic)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.repeats = conv.out_channels // conv.in_channels
        self.conv = nn.Conv2d(conv.out_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              conv.dilation, groups=conv.out_channels, bias=conv.bias is not None)
        self.conv.load_state_dict(conv.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return self.conv(x.unsqueeze(2).expand(n, c, self.repeats, h, w).reshape(n, c * self.repeats, h, w))


def _repeated_depthwise(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every channel-multiplying grouped conv made depthwise (``_RepeatedDepthwise``)."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if (isinstance(child, nn.Conv2d) and child.groups == child.in_channels > 1
                    and child.out_channels != child.in_channels):
                setattr(parent, name, _RepeatedDepthwise(child))
    return model


_LABEL_OPS = ("ArgMax", "TopK", "Squeeze", "Cast")  # what a labels artifact adds after the upsampled logits


def _output_nodes(path: Path) -> list[str]:
    """The node that writes the output (for segmentation the final upsampling), with the argmax after it in a labels
    artifact: left in float by int8 quantization."""
    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: n for n in graph.node for out in n.output}
    node, names = producer[graph.output[0].name], []
    while node.op_type in _LABEL_OPS:
        names.append(node.name)
        node = producer[node.input[0]]
    return [*names, node.name]


def _transpose_before_resize(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Every ``Resize`` whose only consumer is a ``Transpose`` swapped with it: transposed first, at the lower
    resolution, and resized in the new layout (its scales or sizes permuted). A labels artifact's logits are so made
    classes-last at H/4 x W/4, not at full size: MCi0 SemanticFPN's labels program at 512 px (1 thread) then peaked
    at 407 MB over its load in `mcq profile`, against 891 MB with the transpose after the upsampling (logits: 730),
    in the same time (676 ms against 681; logits 676)."""
    graph = proto.graph
    producer = {out: n for n in graph.node for out in n.output}
    uses = Counter([name for n in graph.node for name in n.input] + [out.name for out in graph.output])
    consts = {init.name: init for init in graph.initializer}
    for t in [n for n in graph.node if n.op_type == "Transpose"]:
        resize = producer.get(t.input[0])
        shape_in = [name for name in (resize.input[2:] if resize and resize.op_type == "Resize" else []) if name]
        if uses[t.input[0]] != 1 or len(shape_in) != 1 or uses[shape_in[0]] != 1 or shape_in[0] not in consts:
            continue
        perm = next(onnx.helper.get_attribute_value(a) for a in t.attribute if a.name == "perm")
        values = onnx.numpy_helper.to_array(consts[shape_in[0]])
        consts[shape_in[0]].CopyFrom(onnx.numpy_helper.from_array(values[perm], shape_in[0]))
        moved = onnx.NodeProto()
        moved.CopyFrom(t)
        moved.input[0], moved.output[0] = resize.input[0], f"{t.name}_low"
        resize.input[0], resize.output[0] = moved.output[0], t.output[0]
        graph.node.remove(t)
        graph.node.insert(list(graph.node).index(resize), moved)
    return proto


def _argmax_as_topk(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Every ``ArgMax`` (first of equal maxima, no kept axis) as ``TopK(k=1)``'s indices squeezed: the same
    indices, TopK breaking ties by the lower index. onnxruntime 1.32 took 180 ms for ArgMax over 150 x 512 x 512
    logits at one thread, in either layout, and 35 ms for TopK over the classes made last with its transpose."""
    graph = proto.graph
    for i, node in reversed(list(enumerate(graph.node))):
        if node.op_type != "ArgMax":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("keepdims", 1) or attrs.get("select_last_index", 0):
            raise ValueError(f"ArgMax {node.name}: only ArgMax without keepdims, first index, is rewritten")
        k, axes, top = f"{node.name}_k", f"{node.name}_axes", f"{node.name}_top"
        graph.initializer.extend([onnx.numpy_helper.from_array(np.array([1], np.int64), k),
                                  onnx.numpy_helper.from_array(np.array([attrs.get("axis", 0)], np.int64), axes)])
        graph.node.remove(node)
        graph.node.insert(i, onnx.helper.make_node("Squeeze", [f"{top}_indices", axes], list(node.output),
                                                   name=f"{node.name}_squeeze"))
        graph.node.insert(i, onnx.helper.make_node("TopK", [node.input[0], k], [f"{top}_values", f"{top}_indices"],
                                                   name=top, axis=attrs.get("axis", 0)))
    return proto


def _sorted(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Topologically sort the graph (the fp16 converter appends its input casts after their users)."""
    import onnx_ir as ir

    model = ir.from_proto(proto)
    model.graph.sort()
    return ir.to_proto(model)


@contextlib.contextmanager
def _calibration_in_priority_order():
    """onnxruntime's calibration session, run in ``PRIORITY_BASED`` order.

    Calibration adds a ReduceMin and a ReduceMax on every tensor. In the default order they run late, so every
    activation stays alive until the end: at 640 px Swin-L's calibration passed 20 GB on one image (killed), where
    running the model takes 4 GB. In priority order each reduction runs soon after its tensor is made (Swin-L at
    320 px: 2.9 GB more than the loaded model in the default order, nothing more in this one). The ranges do not
    depend on the order. quantize_static has no option for the session, so its method is swapped while it runs."""
    from onnxruntime.quantization.calibrate import CalibraterBase

    def create_inference_session(self) -> None:  # onnxruntime 1.32's, with the execution order set
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.execution_order = ort.ExecutionOrder.PRIORITY_BASED
        self.infer_session = ort.InferenceSession(self.augmented_model_path, sess_options=options,
                                                  providers=self.execution_providers)

    with patch.object(CalibraterBase, "create_inference_session", create_inference_session):
        yield


def _export_fp32(model: torch.nn.Module, example: torch.Tensor, path: Path, output: str) -> None:
    """Traced with a batch of two: from a batch of one, torch.export specialises the batch axis in adaptive pooling
    (UperNet's PSP) and the export fails."""
    batch = torch.export.Dim("batch", min=1, max=64)
    pair = example[:1].expand(2, *example.shape[1:])
    torch.onnx.export(
        model, (pair,), str(path), dynamo=True, external_data=False, opset_version=OPSET,
        input_names=["image"], output_names=[output], dynamic_shapes=({0: batch},), verbose=False,
    )


def _export_detector(model: torch.nn.Module, example: torch.Tensor, path: Path, outputs: list[str]) -> None:
    """torchvision's Mask R-CNN (``mcq.tasks.detection.DetGraph``) through the TorchScript-based exporter."""
    with warnings.catch_warnings():  # the tracer's notes on torchvision's Python scalars, expected and many
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=OPSET, input_names=["image"],
            output_names=outputs, dynamic_axes={name: {0: "detections"} for name in outputs},
        )


def _scopes(path: Path) -> dict[str, str]:
    """Node name -> the module whose forward made it (the dynamo exporter's ``pkg.torch.onnx.name_scopes``)."""
    import ast

    scopes = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                scopes[node.name] = ".".join(filter(None, ast.literal_eval(prop.value)[-2:-1]))
    return scopes


def _int8(fp32: Path, tmp: Path, calib: torch.Tensor) -> Callable[[str, tuple[str, ...]], Path]:
    """``quantize(method, float_modules)``: the QDQ model of ``fp32`` calibrated with ``method`` (each calibrator
    runs once; its ranges are cached), the nodes inside ``float_modules`` and the output node left float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    pre = tmp / "pre.onnx"
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    scopes, output = _scopes(fp32), _output_nodes(pre)
    made = itertools.count()

    def quantize(method: str, float_modules: tuple[str, ...]) -> Path:
        q = tmp / f"int8-{next(made)}.onnx"
        kept = [n for n, scope in scopes.items() if float_modules and keeps_float(scope, float_modules)]
        with _calibration_in_priority_order(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(pre), str(q), _Calibration(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=output + kept,
                            calibrate_method=getattr(CalibrationMethod, CALIBRATIONS[method]),
                            calibration_cache_path=tmp / f"ranges-{method}.json",
                            # the tensors of one image at a time, merged into the ranges or histograms: onnxruntime
                            # otherwise keeps every image's tensors until the end
                            extra_options={"CalibStridedMinMax": 1})
        return q

    return quantize


def export(model, example: torch.Tensor, path: Path, precision: str, calib: torch.Tensor | None, meta: dict,
           calibration: str = "auto", int8_fallback: str = "auto", check: Check | None = None,
           qat: dict[str, torch.Tensor] | None = None, float_modules: tuple[str, ...] = ()) -> dict | None:
    """Write the ONNX file. int8: with ``check`` (the parity check of an artifact), ``calibration="auto"`` tries
    every calibrator of ``CALIBRATIONS`` in order and ``int8_fallback="auto"`` keeps modules float until one passes
    (``mcq.export.quantization``); returns ``{"int8": ...}``, what was tried and kept. Without ``check``, the first
    calibrator, with ``float_modules`` kept float (``--explain`` repeating an artifact's int8). With ``qat`` (the
    state of quantization-aware training, ``mcq.models.pt2e``), the QDQ graph is the PT2E int8 model with its weights
    and ranges, exported as it is: nothing is calibrated."""
    facts = None
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        if meta.get("graph") == "full":
            if precision != "fp32":
                raise ValueError(f"ONNX Mask R-CNN exports in fp32 only ({precision} requested)")
            _export_detector(model, example, fp32, [o["name"] for o in meta["outputs"]])
        else:
            output = meta.get("output", {}).get("name", "logits")  # the tapped models of explain have no metadata
            source = (qat_int8(model, qat, example, dynamic_batch=True)[0] if qat is not None
                      else _repeated_depthwise(model) if precision == "int8" else model)
            _export_fp32(source, example, fp32, output)
            if output == "labels":
                onnx.save(_argmax_as_topk(_transpose_before_resize(onnx.load(fp32))), fp32)
        if precision == "fp32" or qat is not None:
            proto = onnx.load(fp32)
            facts = {"int8": qat_facts()} if qat is not None else None
        elif precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            proto = onnx.load(fp32)
            del proto.graph.value_info[:]  # stale fp32 annotations would contradict the converted types
            proto = _sorted(convert_float_to_float16(proto, keep_io_types=True))
        elif precision == "int8":
            quantize, methods = _int8(fp32, Path(tmp), calib), methods_for(calibration, tuple(CALIBRATIONS), "onnx")
            if check is None:
                q = quantize(methods[0], float_modules)
                facts = {"int8": {"calibration": methods[0], "float_modules": list(float_modules)}}
            else:
                found = search(quantize, lambda made: check(runner("onnx", made)), methods, model,
                               int8_fallback == "auto")
                if not found.best.parity["passed"]:
                    raise Int8Refused(found)
                q, facts = found.best.artifact, {"int8": found.facts()}
                if found.best.float_modules:
                    runs = {"fp32": fp32, "int8": full_int8(found).artifact, "this": q}
                    facts["int8"]["latency_ms"] = speed_cost({k: runner("onnx", v) for k, v in runs.items()}, example)
            proto = onnx.load(q)
        else:
            raise ValueError(f"ONNX precision {precision!r} not supported (fp32, fp16, int8)")
    onnx.helper.set_model_props(proto, {"mcq": json.dumps({**meta, **(facts or {})})})
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return facts


