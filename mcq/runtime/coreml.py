"""Core ML prediction (macOS only): elsewhere ``run_all`` is None and ``inspect`` checks the spec, inputs, outputs
and metadata of the package instead."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Callable

import numpy as np

from mcq.errors import McqError
from mcq.tasks.metadata import outputs

SPEC_IOS17 = 8  # Core ML specification version of iOS 17 / macOS 14
NOT_RUN = "not run: Core ML prediction needs macOS; spec, inputs, outputs and metadata checked"


COMPUTE_UNITS = ("cpu_only", "cpu_and_gpu", "cpu_and_ne", "all")  # coremltools' ``ComputeUnit``, lower-case


def can_predict() -> bool:
    """Whether coremltools can run a model here (macOS only)."""
    return platform.system() == "Darwin"


def compute_unit(name: str):
    """coremltools' ``ComputeUnit`` called ``name`` (one of ``COMPUTE_UNITS``)."""
    import coremltools as ct

    if name not in COMPUTE_UNITS:
        raise McqError(f"unknown Core ML compute units {name!r}; known: {', '.join(COMPUTE_UNITS)}")
    return ct.ComputeUnit[name.upper()]


def run_all(path: Path, threads: int | None = None,
            compute_units: str = "all") -> Callable[[np.ndarray], list[np.ndarray]] | None:
    """On macOS: normalised NCHW float32 -> pixels -> ``MLModel.predict`` on ``compute_units`` -> every output, in
    the order the metadata lists them. Elsewhere None. ``threads`` has no Core ML setting; it is ignored."""
    if not can_predict():
        return None
    import coremltools as ct
    from PIL import Image

    mlmodel = ct.models.MLModel(str(path), compute_units=compute_unit(compute_units))
    meta = json.loads(mlmodel.user_defined_metadata["mcq"])
    mean = np.asarray(meta["input"]["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(meta["input"]["std"], np.float32).reshape(1, -1, 1, 1)
    outs = outputs(meta)

    def run(x: np.ndarray) -> list[np.ndarray]:
        pixels = np.clip(np.rint((np.asarray(x, np.float32) * std + mean) * 255.0), 0, 255).astype(np.uint8)
        images = [Image.fromarray(np.ascontiguousarray(p.transpose(1, 2, 0))) for p in pixels]
        preds = [mlmodel.predict({"image": image}) for image in images]
        return [np.concatenate([np.asarray(p[o["name"]], o.get("dtype", "float32")).reshape(o["shape"]) for p in preds])
                for o in outs]

    return run


def _ops(spec) -> list[str]:
    """Every op type in the ML program's main function (nested blocks included)."""
    types = []

    def walk(block):
        for op in block.operations:
            types.append(op.type)
            for inner in op.blocks:
                walk(inner)

    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            walk(block)
    return types


def inspect(path: Path, meta: dict) -> dict:
    """What can be checked without Core ML's runtime: the program, its input, output and metadata."""
    import coremltools as ct
    from coremltools.proto import FeatureTypes_pb2 as ft

    precision = meta.get("precision", "")
    checks: dict[str, bool] = {}
    why: list[str] = []

    def check(name: str, ok: bool, fail: str) -> None:
        checks[name] = bool(ok)
        if not ok:
            why.append(fail)

    try:
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    except Exception as e:  # noqa: BLE001 - an unreadable package is a failed check
        return {"numerics": NOT_RUN, "checks": {"loads": False}, "passed": False, "precision": precision,
                "thresholds": {}, "why": f"cannot read {Path(path).name}: {e}"}
    checks["loads"] = True
    check("ml_program", spec.WhichOneof("Type") == "mlProgram", f"not an ML program ({spec.WhichOneof('Type')})")
    check("ios17", spec.specificationVersion >= SPEC_IOS17,
          f"specification version {spec.specificationVersion} < {SPEC_IOS17} (iOS 17)")
    _, _, h, w = meta["input"]["shape"]
    inputs, found = list(spec.description.input), list(spec.description.output)
    image = inputs[0].type.imageType if len(inputs) == 1 and inputs[0].name == "image" else None
    check("input", image is not None and inputs[0].type.WhichOneof("Type") == "imageType"
          and image.colorSpace == ft.ImageFeatureType.RGB and (image.height, image.width) == (h, w),
          f"input is not one RGB image 'image' of {h}x{w}: {[(i.name, i.type.WhichOneof('Type')) for i in inputs]}"
          + (f" {image.height}x{image.width}" if image is not None else ""))
    want = {o["name"]: o["shape"] for o in outputs(meta)}
    shapes = {o.name: list(o.type.multiArrayType.shape) for o in found if o.type.WhichOneof("Type") == "multiArrayType"}
    check("output", list(shapes) == list(want) == [o.name for o in found]
          and all(shapes[n] in ([], want[n]) for n in want),
          f"outputs are not {want}: {shapes}")
    try:
        inside = json.loads(spec.description.metadata.userDefined["mcq"])
    except (KeyError, ValueError):
        inside = None
    check("metadata", inside is not None and all(inside.get(key) == meta.get(key) for key in
                                                 ("task", "encoder", "head", "class_names", "palette", "input",
                                                  "output", "outputs", "graph", "precision")),
          "the metadata inside the package does not match the export's (class names, input, output, precision)")
    ops = _ops(spec)
    if precision == "int8":
        check("int8_weights", any(op.startswith("constexpr_") for op in ops),
              "int8 requested but no weight is stored compressed (no constexpr_* dequantize op)")
    result = {"numerics": NOT_RUN, "checks": checks, "passed": not why, "precision": precision, "thresholds": {},
              "ops": len(ops)}
    if why:
        result["why"] = "; ".join(why)
    return result


def read_metadata(path: Path) -> dict:
    import coremltools as ct

    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    return json.loads(spec.description.metadata.userDefined["mcq"])


