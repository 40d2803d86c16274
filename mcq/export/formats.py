"""The registry of export formats: name -> module with ``export(...)``; running and inspecting the artifacts is
``mcq.runtime.backends``'s.

A format module provides:
    DEFAULT_PRECISION: str                             what ``--precision`` defaults to for it
    export(model, example, path, precision, calib, meta) -> dict | None
        write the artifact for ``model`` (eval, reparameterized; NCHW float32 normalised input -> logits)
        to ``path``; ``calib`` holds dataset images for int8 calibration; ``meta`` goes inside where possible;
        returns facts about the artifact for its report and sidecar (ExecuTorch: ``delegation``), or None
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from mcq.errors import McqError
from mcq.runtime.backends import BACKENDS

FORMATS = {name: f"mcq.export.{name}" for name in BACKENDS}


def format_module(name: str) -> ModuleType:
    if name not in FORMATS:
        raise McqError(f"unknown export format {name!r}; known: {', '.join(FORMATS)}")
    return import_module(FORMATS[name])
