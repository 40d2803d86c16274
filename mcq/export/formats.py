"""The registry of export formats: name -> module with ``export(...)`` and ``runner(...)``, and its suffix.

A format module provides:
    DEFAULT_PRECISION: str                             what ``--precision`` defaults to for it
    export(model, example, path, precision, calib, meta) -> dict | None
        write the artifact for ``model`` (eval, reparameterized; NCHW float32 normalised input -> logits)
        to ``path``; ``calib`` holds dataset images for int8 calibration; ``meta`` goes inside where possible;
        returns facts about the artifact for its report and sidecar (ExecuTorch: ``delegation``), or None
    run_all(path, threads=None) -> Callable[[np.ndarray], list[np.ndarray]] | None
        run one batch through the format's own runtime (``threads`` intra-op threads where it has the
        setting) and return every output, or None where it cannot run on this machine
    runner(path, threads=None)                         the same, returning the first output
    inspect(path, meta) -> dict                        (only where runner can be None) the checks that can run
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from mcq.errors import McqError

FORMATS = {"onnx": "mcq.export.onnx", "executorch": "mcq.export.executorch", "coreml": "mcq.export.coreml"}
# the artifact suffix of each format, known without importing its module (and runtime) to tell what a path is
SUFFIXES = {"onnx": ".onnx", "executorch": ".pte", "coreml": ".mlpackage"}


def format_module(name: str) -> ModuleType:
    if name not in FORMATS:
        raise McqError(f"unknown export format {name!r}; known: {', '.join(FORMATS)}")
    return import_module(FORMATS[name])


def format_for(path: str) -> str:
    """The format an artifact path belongs to, by suffix."""
    for name, suffix in SUFFIXES.items():
        if str(path).rstrip("/").endswith(suffix):
            return name
    raise McqError(f"{path}: not an mcq artifact (.onnx, .pte, .mlpackage) or checkpoint (.ckpt)")
