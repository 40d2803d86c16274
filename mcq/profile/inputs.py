"""What ``mcq profile`` feeds a model of each task and times around it, as an app on the device would do it.

The input is the first validation image of the task's data, pre-processed as the artifact expects it
(``mcq.tasks.processing.dataset_images``). Pre-processing (timed on the decoded image) and post-processing (timed on
each cell's own outputs) are the task's (``app_steps`` in ``mcq.tasks.specs``):

- seg: resize + normalise; the logits upsampled (bilinear) to the image and argmax, or the labels of a model
  that outputs labels (``mcq.export.labels``) resized to the image (nearest).
- depth: resize to the artifact's 4:3 input + normalise; the depth map upsampled (bilinear) to the image.
- cls: resize, centre crop, normalise; softmax and the top 5.
- det: letterbox (long side to the input size, normalise, pad); what the artifact's graph leaves to the app
  (``mcq.tasks.detection.detections``): for a ``features`` graph the RPN's proposal decoding and NMS, RoIAlign,
  the box and mask heads, NMS per class and mask pasting, in Python; for the ``full`` graph nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from torch import nn

from mcq.tasks.processing import dataset_images
from mcq.tasks.specs import task_spec

Outputs = list  # every output of one run, numpy arrays or tensors, in the artifact's order


@dataclass
class TaskInput:
    """One image as the model of a task takes it, and the work an app does around the model."""

    x: np.ndarray  # the model's input [1, 3, H, W]
    pre: Callable[[], object]  # decoded image -> the model's input
    post: Callable[[Outputs, str], object]  # (one run's outputs, the artifact's det graph or "") -> the answer
    image: str  # "WxH" of that image
    decoded: Image.Image  # the image itself (the web runtime hands it to the page)


def task_input(task: str, model: nn.Module, size: int, data: str | Path | None) -> TaskInput:
    """The profile's input for ``model`` (the inference form of a ``task`` checkpoint) at ``size``."""
    spec = task_spec(task)
    root = Path(data) if data else spec.default_data()
    x = dataset_images(root, spec.splits[1], size, model.cfg.encoder, 1, task)
    image = spec.dataset(root, spec.splits[1])[0][0]  # decoded, untransformed
    pre, post = spec.app_steps(model, image, size, root, tuple(x.shape[-2:]))
    return TaskInput(x.numpy(), pre, post, f"{image.width}x{image.height}", image)
