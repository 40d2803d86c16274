"""mcq's checkpoint format, read and written without Lightning and without executing code.

A checkpoint is a ``torch.save``d dict: ``hyper_parameters`` (``model``: the model's config, ``optim``: the resolved
recipe, whose ``task`` names the task, and per task ``class_names``, ``category_ids``, ``palette``, ``qat``) and
``state_dict`` (the model's weights under ``model.``). A training run's checkpoints (Lightning's) hold more (optimizer,
loops, callbacks) for ``--resume``; ``write_checkpoint`` writes the part every reader needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mcq.errors import McqError
from mcq.io import atomic_path, diff_state, load_state
from mcq.models.inference import inference_form
from mcq.models.pt2e import qat_weights
from mcq.tasks.specs import TaskSpec, task_spec

PREFIX = "model."  # where the model's weights sit in ``state_dict`` (the LightningModule's ``model`` attribute)
QAT_PREFIX = "model.graph."  # where a quantization-aware run keeps its graph's state (``mcq.train.qat.QatModel``)
LEGACY_TASK = "seg"  # checkpoints written before their recipe named its task are all segmentation ones


@dataclass
class Trained:
    """A trained model as its checkpoint holds it: ``model`` in eval mode and the ``hparams`` it was built from;
    ``qat`` is the whole trained state of a quantization-aware checkpoint (fake quantizers included), whose
    ``model`` is then the float inference form with the fine-tuned weights."""

    task: str
    model: nn.Module
    hparams: dict
    qat: dict | None = None

    @property
    def recipe(self) -> dict:
        return self.hparams["optim"]

    @property
    def class_names(self) -> list[str] | None:
        return self.hparams.get("class_names")

    @property
    def palette(self) -> list[list[int]] | None:
        return self.hparams.get("palette")


def _hparams(ckpt) -> dict | None:
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    return hp if isinstance(hp, dict) and isinstance(hp.get("optim"), dict) else None


def task_of(hparams: dict) -> str:
    """The task a checkpoint's hyper-parameters belong to."""
    return hparams["optim"].get("task", LEGACY_TASK)


def read_checkpoint(path: str | Path, task: str | None = None) -> Trained:
    """The model stored in ``path`` with its weights (eval mode); with ``task``, a one-line error unless the
    checkpoint is one of that task."""
    ckpt = load_state(path)
    hp = _hparams(ckpt)
    found = task_of(hp) if hp else None
    spec = task_spec(task or found or LEGACY_TASK)
    if not hp or not set(spec.hparams) <= set(hp) or not isinstance(ckpt.get("state_dict"), dict):
        raise McqError(f"{path}: not an mcq {spec.title} checkpoint (no model config); pass a run's checkpoints/*.ckpt")
    if found != spec.name:
        raise McqError(f"{path}: a {found} checkpoint, not a {spec.title} one; use `mcq eval {found}`")
    state = ckpt["state_dict"]
    model = spec.build_model(hp["model"])
    if hp.get("qat"):
        return _quantization_aware(spec, model, hp, state, path)
    if any(k.startswith("model.decoder.") for k in state):
        raise McqError(f"{path}: written by mcq before its heads became mmseg's (model.decoder.*, smp / torchvision "
                       "heads); retrain it with this version")
    weights = {k.removeprefix(PREFIX) if k.startswith(PREFIX) else k: v for k, v in state.items()}
    d = diff_state(model.state_dict(), weights)
    if d.missing or d.unexpected or d.mismatched:  # summarised: the full key lists run to thousands of characters
        example = (d.mismatched or d.missing or d.unexpected)[0]
        raise McqError(
            f"{path}: weights do not fit a {hp['model'].get('encoder', spec.title)} model ({len(d.missing)} missing, "
            f"{len(d.mismatched)} of another shape, {len(d.unexpected)} unexpected, e.g. {example})"
        )
    model.load_state_dict(weights)
    return Trained(spec.name, model.eval(), dict(hp))


def is_task_checkpoint(path: str | Path, task: str) -> bool:
    """Whether ``path`` is an mcq checkpoint of ``task`` (a run's, or one ``mcq import`` wrote), not a CLIP one."""
    hp = _hparams(load_state(path))
    return hp is not None and task_of(hp) == task


def _quantization_aware(spec: TaskSpec, model: nn.Module, hp: dict, state: dict, path: str | Path) -> Trained:
    """The model of a quantization-aware checkpoint (``mcq train --qat``): the float inference form with the
    fine-tuned weights, and ``qat`` the whole trained state that an int8 export takes (``mcq.models.pt2e``)."""
    graph = {k.removeprefix(QAT_PREFIX): v for k, v in state.items() if k.startswith(QAT_PREFIX)}
    try:
        model = qat_weights(inference_form(model), graph)
    except ValueError as e:
        raise McqError(f"{path}: not a quantization-aware checkpoint of this model: {e}") from None
    return Trained(spec.name, model.eval(), dict(hp), graph)


def write_checkpoint(path: str | Path, model: nn.Module, hparams: dict, **extra) -> Path:
    """Write ``model`` with ``hparams`` as an mcq checkpoint at ``path``, atomically; ``extra`` entries are stored
    beside them (e.g. where an import came from)."""
    state = {PREFIX + k: v for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "hyper_parameters": hparams, "epoch": 0, "global_step": 0, **extra}, tmp)
    return Path(path)
