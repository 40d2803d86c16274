"""Core ML: an ML program (``.mlpackage``, iOS 17+) converted from the ``torch.export`` program.

The input is an RGB image (``image``, H x W of the export size) with the normalisation folded in: Core ML's
``ImageType`` computes ``scale * pixel + bias`` with one scale for all channels, so a per-channel std that is
not uniform is divided inside a thin wrapper module. fp16 and fp32 set the compute precision; int8 is
weight-only linear symmetric int8 (``coremltools.optimize.coreml``) on the fp16 model. Prediction needs macOS:
elsewhere ``mcq.runtime.coreml`` checks the spec, inputs, outputs and metadata instead.

``torch.jit.trace`` + ``ct.convert`` fails on size-based ``interpolate``; the decomposed ``torch.export``
program converts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mcq.tasks.metadata import outputs

DEFAULT_PRECISION = "fp16"


class _DivideStd(nn.Module):
    """``model(x / std)`` per channel: what the image input's single scale cannot express."""

    def __init__(self, model: nn.Module, std):
        super().__init__()
        self.model = model
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * self.inv_std)


def _image_input(mean, std) -> dict:
    """How pixels (0-255 RGB) become the model's input: ``scale * pixel + bias`` per channel, then ``/ std``
    inside the model where the std differs between channels."""
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(set(std)) == 1:
        return {"type": "image", "color_layout": "RGB", "scale": 1.0 / (255.0 * std[0]),
                "bias": [-m / std[0] for m in mean], "std_in_model": None}
    return {"type": "image", "color_layout": "RGB", "scale": 1.0 / 255.0, "bias": [-m for m in mean],
            "std_in_model": std}


def export(model, example: torch.Tensor, path: Path, precision: str, calib: torch.Tensor | None, meta: dict) -> None:
    import coremltools as ct

    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"Core ML precision {precision!r} not supported (fp16, fp32, int8)")
    fed = _image_input(meta["input"]["mean"], meta["input"]["std"])
    meta["coreml_input"] = fed  # recorded inside the package and in the sidecar
    net = _DivideStd(model, fed["std_in_model"]).eval() if fed["std_in_model"] else model
    example = example[:1].float()
    with torch.no_grad():
        ep = torch.export.export(net, (example,)).run_decompositions({})
    mlmodel = ct.convert(
        ep, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
        inputs=[ct.ImageType(name="image", shape=tuple(example.shape), color_layout=ct.colorlayout.RGB,
                             scale=fed["scale"], bias=fed["bias"])],
        outputs=[ct.TensorType(name=o["name"], dtype=getattr(np, o.get("dtype", "float32"))) for o in outputs(meta)],
        compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
        skip_model_load=True,
    )
    if precision == "int8":
        import coremltools.optimize.coreml as cto

        config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric"))
        with np.errstate(divide="ignore", invalid="ignore"):  # an all-zero weight gets scale 0 and stays 0
            mlmodel = cto.linear_quantize_weights(mlmodel, config=config)
    h, w = example.shape[-2:]
    mlmodel.short_description = (f"mcq {meta['task']} {meta['encoder']}+{meta['head']} on a {h}x{w} RGB image "
                                 f"({precision})")
    mlmodel.author = "mcq"
    mlmodel.version = str(meta.get("mcq_version", ""))
    mlmodel.input_description["image"] = f"RGB image, {w}x{h}, stretched to this size"
    for output in outputs(meta):
        mlmodel.output_description[output["name"]] = f"{output['shape']}: {output['meaning']}"
    mlmodel.user_defined_metadata["mcq"] = json.dumps(meta)
    if meta.get("class_names"):
        mlmodel.user_defined_metadata["com.apple.coreml.model.preview.params"] = json.dumps(
            {"labels": list(meta["class_names"])})
    mlmodel.save(str(path))
