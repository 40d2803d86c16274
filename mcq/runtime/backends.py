"""The runtimes of exported artifacts: format name -> module that opens and runs its artifacts, and each format's
suffix.

A backend module provides:
    run_all(path, threads=None) -> Callable[[np.ndarray], list[np.ndarray]] | None
        run one batch through the format's own runtime (``threads`` intra-op threads where it has the setting) and
        return every output, or None where it cannot run on this machine
    read_metadata(path) -> dict                        the metadata stored inside the artifact (ONNX, Core ML)
    inspect(path, meta) -> dict                        (only where run_all can be None) the checks that can run
``runner`` (below) runs any format's artifact for its first output.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np

from mcq.errors import McqError
from mcq.tasks.parity import first_output

BACKENDS = {"onnx": "mcq.runtime.onnx", "executorch": "mcq.runtime.executorch", "coreml": "mcq.runtime.coreml"}
# the artifact suffix of each format, known without importing its module (and runtime) to tell what a path is
SUFFIXES = {"onnx": ".onnx", "executorch": ".pte", "coreml": ".mlpackage"}
RUNTIMES = {"onnx": "onnxruntime", "executorch": "executorch", "coreml": "coreml"}  # what reports call each


def backend(fmt: str) -> ModuleType:
    """The runtime module of format ``fmt``."""
    if fmt not in BACKENDS:
        raise McqError(f"unknown export format {fmt!r}; known: {', '.join(BACKENDS)}")
    return import_module(BACKENDS[fmt])


def runner(fmt: str, path: str | Path, threads: int | None = None,
           **settings) -> Callable[[np.ndarray], np.ndarray] | None:
    """The first output of ``fmt``'s ``run_all`` (``settings``: e.g. Core ML's ``compute_units``), or None where
    the artifact cannot run on this machine."""
    return first_output(backend(fmt).run_all(Path(path), threads, **settings))


def format_for(path: str) -> str:
    """The format an artifact path belongs to, by suffix."""
    for name, suffix in SUFFIXES.items():
        if str(path).rstrip("/").endswith(suffix):
            return name
    raise McqError(f"{path}: not an mcq artifact (.onnx, .pte, .mlpackage) or checkpoint (.ckpt)")
