"""Reading mcq's own training checkpoints (Lightning ``.ckpt`` files) without executing code."""

from __future__ import annotations

from pathlib import Path

from mcq.engine.seg_module import SegTask
from mcq.errors import McqError
from mcq.io import diff_state, load_state


def load_seg_task(path: str | Path) -> SegTask:
    """Rebuild the segmentation task stored in ``path`` with its weights (eval mode)."""
    ckpt = load_state(path)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not hp or not {"model", "class_names", "optim"} <= set(hp) or not isinstance(ckpt.get("state_dict"), dict):
        raise McqError(f"{path}: not an mcq segmentation checkpoint (no model config); pass a run's checkpoints/*.ckpt")
    task = SegTask(model=hp["model"], class_names=hp["class_names"], optim=hp["optim"])
    d = diff_state(task.state_dict(), ckpt["state_dict"])
    if d.missing or d.unexpected or d.mismatched:  # summarised: the full key lists run to thousands of characters
        example = (d.mismatched or d.missing or d.unexpected)[0]
        raise McqError(
            f"{path}: weights do not fit a {hp['model']['encoder']} model ({len(d.missing)} missing, "
            f"{len(d.mismatched)} of another shape, {len(d.unexpected)} unexpected, e.g. {example})"
        )
    task.load_state_dict(ckpt["state_dict"])
    return task.eval()
