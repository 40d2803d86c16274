"""Reading mcq's own training checkpoints (Lightning ``.ckpt`` files) without executing code."""

from __future__ import annotations

import inspect
from pathlib import Path

from mcq.engine.module import TaskModule
from mcq.engine.seg_module import SegTask
from mcq.engine.tasks import task_spec
from mcq.errors import McqError
from mcq.export.pt2e import qat_weights
from mcq.io import diff_state, load_state
from mcq.models.inference import inference_form

QAT_PREFIX = "model.graph."  # where a quantization-aware run keeps its graph's state (``mcq.engine.qat.QatModel``)


def load_task(path: str | Path, task: str | None = None) -> TaskModule:
    """Rebuild the ``task`` module ("seg", "depth", "cls") stored in ``path`` with its weights (eval mode);
    ``None`` takes whichever task the checkpoint holds (its name is ``module.hparams.optim["task"]``)."""
    ckpt = load_state(path)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    found = hp["optim"].get("task", "seg") if hp and isinstance(hp.get("optim"), dict) else None
    spec = task_spec(task or found or "seg")
    params = inspect.signature(spec.module).parameters
    required = {k for k, p in params.items() if p.default is inspect.Parameter.empty}
    if not hp or not required <= set(hp) or not isinstance(ckpt.get("state_dict"), dict):
        raise McqError(f"{path}: not an mcq {spec.title} checkpoint (no model config); pass a run's checkpoints/*.ckpt")
    if found != spec.name:
        raise McqError(f"{path}: a {found} checkpoint, not a {spec.title} one; use `mcq eval {found}`")
    module = spec.module(**{k: hp[k] for k in params if k in hp})
    if hp.get("qat"):
        module.hparams.qat = hp["qat"]
        return _quantization_aware(module, ckpt["state_dict"], path)
    if any(k.startswith("model.decoder.") for k in ckpt["state_dict"]):
        raise McqError(f"{path}: written by mcq before its heads became mmseg's (model.decoder.*, smp / torchvision "
                       "heads); retrain it with this version")
    d = diff_state(module.state_dict(), ckpt["state_dict"])
    if d.missing or d.unexpected or d.mismatched:  # summarised: the full key lists run to thousands of characters
        example = (d.mismatched or d.missing or d.unexpected)[0]
        raise McqError(
            f"{path}: weights do not fit a {hp['model']['encoder']} model ({len(d.missing)} missing, "
            f"{len(d.mismatched)} of another shape, {len(d.unexpected)} unexpected, e.g. {example})"
        )
    module.load_state_dict(ckpt["state_dict"])
    return module.eval()


def is_task_checkpoint(path: str | Path, task: str) -> bool:
    """Whether ``path`` is an mcq checkpoint of ``task`` (a run's, or one ``mcq import`` wrote), not a CLIP one."""
    ckpt = load_state(path)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    return isinstance(hp, dict) and isinstance(hp.get("optim"), dict) and hp["optim"].get("task", "seg") == task


def _quantization_aware(module: TaskModule, state: dict, path: str | Path) -> TaskModule:
    """The task of a quantization-aware checkpoint (``mcq train --qat``): its model is the float inference form
    with the fine-tuned weights, and ``module.qat`` the whole trained state, fake quantizers included, that an
    int8 export takes (``mcq.export.pt2e``)."""
    graph = {k.removeprefix(QAT_PREFIX): v for k, v in state.items() if k.startswith(QAT_PREFIX)}
    try:
        module.model = qat_weights(inference_form(module.model), graph)
    except ValueError as e:
        raise McqError(f"{path}: not a quantization-aware checkpoint of this model: {e}") from None
    module.qat = graph
    return module.eval()


def load_seg_task(path: str | Path) -> SegTask:
    """Rebuild the segmentation task stored in ``path`` with its weights (eval mode)."""
    return load_task(path, "seg")
