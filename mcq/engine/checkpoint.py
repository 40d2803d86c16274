"""Reading mcq's own training checkpoints (Lightning ``.ckpt`` files) without executing code."""

from __future__ import annotations

from pathlib import Path

from mcq.engine.seg_module import SegTask
from mcq.errors import McqError
from mcq.io import load_state


def load_seg_task(path: str | Path) -> SegTask:
    """Rebuild the segmentation task stored in ``path`` with its weights (eval mode)."""
    ckpt = load_state(path)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not hp or not {"model", "class_names", "optim"} <= set(hp) or "state_dict" not in ckpt:
        raise McqError(f"{path}: not an mcq segmentation checkpoint (no model config); pass a run's checkpoints/*.ckpt")
    task = SegTask(model=hp["model"], class_names=hp["class_names"], optim=hp["optim"])
    try:
        task.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        lines = str(e).splitlines()
        raise McqError(f"{path}: weights do not fit a {hp['model']['encoder']} model ({(lines[1:] or lines)[0].strip()})") from e
    return task.eval()
