"""Deploy targets as plain data: one JSON file per target in the checkout's top-level ``export/`` folder.

A target names what ``mcq export --target NAME`` makes for one kind of device: format, precision, input size,
outputs, int8 calibration, the ExecuTorch delegate and Core ML's compute units. ``mcq/export/target_files`` is a
link to ``export/``, so the same files are read in a checkout and shipped as package data in a wheel. A user's own
target is a ``.json`` file of the same layout, passed by its path. Flags given on the command line override a
target's values for one run (``export_arguments``); the file is never written.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from mcq.errors import McqError
from mcq.export import executorch, onnx
from mcq.runtime.coreml import COMPUTE_UNITS
from mcq.export.formats import FORMATS
from mcq.export.labels import OUTPUTS
from mcq.io import read_json

TARGETS_DIR = Path(__file__).with_name("target_files")
PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("xnnpack", "coreml")  # ExecuTorch delegates (the CLI's --executorch-backend)
# the int8 calibration methods of each format, or auto: each in turn until the artifact passes its check; Core ML
# int8 is weight-only and takes none
CALIBRATION = {"onnx": ("auto", *onnx.CALIBRATIONS), "executorch": ("auto", *executorch.CALIBRATIONS)}


@dataclass(frozen=True)
class Calibration:
    """int8 calibration: how many training images, and the method (recorded, it is the format's own)."""

    images: int
    method: str


@dataclass(frozen=True)
class Target:
    """One deploy target; ``name`` is its file's stem."""

    name: str
    description: str
    format: str
    backend: str | None  # executorch only
    precision: str
    img_size: int | None  # None: the checkpoint's training size
    outputs: str  # logits, or labels (seg: the argmax in the graph, ``mcq.export.labels``)
    calibration: Calibration | None  # int8 of onnx and executorch only
    compute_units: str | None  # coreml only


def list_targets() -> list[str]:
    """The names of the shipped targets, sorted."""
    return sorted(p.stem for p in TARGETS_DIR.glob("*.json"))


def load_target(name_or_path: str | Path) -> Target:
    """The shipped target ``name_or_path`` (e.g. ``"android-xnnpack-int8"``), or the target file at that path."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = TARGETS_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise McqError(f"unknown deploy target {str(name_or_path)!r}; known: {', '.join(list_targets())} "
                           "(or the path of a .json target file)")
    elif not path.is_file():
        raise McqError(f"{path}: no such target file")
    return _validated(path, read_json(path))


def _validated(path: Path, data) -> Target:
    """``data`` as a Target; a one-line McqError naming ``path`` and the fix at the first thing wrong."""

    def bad(what: str) -> McqError:
        return McqError(f"{path}: {what}")

    def one_of(key: str, allowed) -> None:
        if data[key] not in allowed:
            raise bad(f"{key} {data[key]!r} is not one of {', '.join(allowed)}")

    keys = [f.name for f in fields(Target) if f.name != "name"]
    if not isinstance(data, dict):
        raise bad(f"a target is a JSON object with the keys {', '.join(keys)}")
    unknown, missing = sorted(set(data) - set(keys)), [k for k in keys if k not in data]
    if unknown:
        raise bad(f"unknown key {unknown[0]!r}; a target has the keys {', '.join(keys)}")
    if missing:
        raise bad(f"missing key {missing[0]!r}; a target has the keys {', '.join(keys)}")
    if not isinstance(data["description"], str) or not data["description"].strip() or "\n" in data["description"]:
        raise bad("description must be one line of text")
    one_of("format", list(FORMATS))
    one_of("precision", PRECISIONS)
    one_of("outputs", OUTPUTS)
    size = data["img_size"]
    if size is not None and (type(size) is not int or size <= 0):
        raise bad(f"img_size {size!r} must be a positive integer, or null for the training size")
    fmt = data["format"]
    if fmt == "executorch":
        one_of("backend", BACKENDS)
        if data["backend"] == "coreml" and data["precision"] == "int8":
            raise bad("ExecuTorch's coreml backend takes fp32 or fp16; for int8 use backend xnnpack or format coreml")
    elif data["backend"] is not None:
        raise bad(f"backend is for format executorch; set it to null for {fmt}")
    if fmt == "coreml":
        one_of("compute_units", COMPUTE_UNITS)
    elif data["compute_units"] is not None:
        raise bad(f"compute_units is for format coreml; set it to null for {fmt}")
    calib = data["calibration"]
    if data["precision"] != "int8" or fmt not in CALIBRATION:
        if calib is not None:
            raise bad(f"calibration is for int8 of {' and '.join(CALIBRATION)}; set it to null")
        return Target(path.stem, **data)
    methods = CALIBRATION[fmt]
    layout = f'{{"images": 16, "method": "{methods[0]}"}}'
    if not isinstance(calib, dict) or set(calib) != {"images", "method"}:
        raise bad(f"int8 needs calibration as {layout}")
    if type(calib["images"]) is not int or calib["images"] <= 0:
        raise bad(f"calibration images {calib['images']!r} must be a positive integer")
    if calib["method"] not in methods:
        raise bad(f"calibration method {calib['method']!r}: {fmt} int8 calibrates with {' or '.join(methods)}")
    return Target(path.stem, **{**data, "calibration": Calibration(**calib)})


def export_arguments(target: Target, precisions: list[str] | None = None, img_size: int | None = None,
                     backend: str | None = None, outputs: str | None = None,
                     calibration: str | None = None) -> dict:
    """The keyword arguments of ``export_checkpoint`` for ``target`` (all but the checkpoint and where things go);
    ``precisions``, ``img_size``, ``backend``, ``outputs`` and ``calibration``, when given, override the target's
    values."""
    backend = backend or target.backend
    kwargs = dict(formats=[target.format], precisions=precisions or [target.precision],
                  img_size=img_size or target.img_size, target=target.name, compute_units=target.compute_units,
                  outputs=outputs or target.outputs,
                  options={"executorch": {"backend": backend}} if backend and backend != "xnnpack" else {})
    if target.calibration:
        kwargs["n_calib"] = target.calibration.images
    if calibration or target.calibration:
        kwargs["calibration"] = calibration or target.calibration.method
    return kwargs


def format_targets() -> str:
    """The shipped targets as a table: name, format (executorch: and delegate), precision, size, description."""
    rows = [("target", "format", "precision", "size", "description")]
    for t in map(load_target, list_targets()):
        rows.append((t.name, f"{t.format}/{t.backend}" if t.backend else t.format, t.precision,
                     str(t.img_size or "training"), t.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(f"{c:<{w}}" for c, w in zip(r, widths)) + "  " + r[4] for r in rows)
