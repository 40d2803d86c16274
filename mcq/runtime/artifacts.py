"""Open a model by path, whatever it is: a training checkpoint (PyTorch) or an exported artifact (its runtime)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mcq.errors import McqError
from mcq.models.inference import inference_form
from mcq.runtime.backends import RUNTIMES, format_for, runner
from mcq.tasks.checkpoint import read_checkpoint
from mcq.tasks.metadata import task_metadata
from mcq.tasks.parity import first_output
from mcq.tasks.schema import read_sidecar


@dataclass
class OpenedModel:
    """``run`` maps a normalised NCHW float32 batch to the model's output; ``meta`` is the artifact's metadata."""

    run: Callable[[np.ndarray], np.ndarray]
    meta: dict
    runtime: str


def open_model(path: str | Path, threads: int | None = None, task: str | None = None) -> OpenedModel:
    """The model at ``path`` ready to run; with ``task``, a one-line error unless it is a model of that task."""
    opened = _open(Path(path), threads)
    if task and opened.meta["task"] != task:
        raise McqError(f"{path}: a {opened.meta['task']} model, not a {task} one")
    return opened


def torch_run_all(model: torch.nn.Module) -> Callable[[np.ndarray], list[np.ndarray]]:
    """``model`` (in eval mode) as a runtime's ``run_all``: a float32 NCHW batch in, every output as an array."""

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            out = model(torch.from_numpy(x))
        return [o.numpy() for o in out] if isinstance(out, tuple) else [out.numpy()]

    return run


def torch_runner(model: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """``model`` (in eval mode) as a runtime's ``run``: its first output."""
    return first_output(torch_run_all(model))


def _open(path: Path, threads: int | None) -> OpenedModel:
    if not path.exists():
        raise McqError(f"{path}: no such model file")
    if path.suffix == ".ckpt":
        task = read_checkpoint(path)
        meta = task_metadata(task, (task.recipe["img_size"],) * 2, path)
        return OpenedModel(torch_runner(inference_form(task.model)), meta, "torch")
    fmt = format_for(str(path))
    meta = read_sidecar(path)
    run = runner(fmt, path, threads)
    if run is None:
        raise McqError(f"{path}: {fmt} models cannot run on this machine (Core ML prediction needs macOS)")
    return OpenedModel(run, meta, RUNTIMES[fmt])
