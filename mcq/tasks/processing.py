"""Dataset images as an artifact takes them (each task's pre- and post-processing around its model: ``app_steps``
in ``mcq.tasks.specs``; detection's: ``mcq.tasks.detection``)."""

from __future__ import annotations

from pathlib import Path

import torch

from mcq.models.encoders import normalization
from mcq.tasks.detection import letterbox
from mcq.tasks.specs import task_spec


def dataset_images(data: str | Path | None, split: str, size: int, backbone: str, n: int,
                   task: str = "seg") -> torch.Tensor:
    """The first ``n`` images of ``split`` (default data: the embedded dataset of ``task``), preprocessed as the
    artifact expects them."""
    spec = task_spec(task)
    ds = spec.eval_set(Path(data) if data else spec.default_data(), split, size, backbone)
    images = [ds[i][0] for i in range(min(n, len(ds)))]
    if task == "det":  # images at their own size: letterboxed and normalised, as the artifact takes them
        images = [letterbox(x, size, *normalization(backbone))[0] for x in images]
    return torch.stack(images)
