"""What ``mcq profile`` feeds a model of each task and times around it, as an app on the device would do it.

The input is the first validation image of the task's data, pre-processed as the artifact expects it
(``mcq.export.exporter.dataset_images``). Pre-processing (timed on the decoded image) and post-processing (timed on
each cell's own outputs) per task:

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
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from mcq.models.encoders import normalization
from mcq.tasks import detection
from mcq.tasks.processing import dataset_images, labels_at
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
    backbone = model.cfg.encoder
    x = dataset_images(root, spec.splits[1], size, backbone, 1, task)
    image = spec.dataset(root, spec.splits[1])[0][0]  # decoded, untransformed
    w, h = image.size
    if task == "det":
        pixels = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])
        pre = lambda: detection.letterbox(pixels(image), size, *normalization(backbone))  # noqa: E731
        input_hw = tuple(x.shape[-2:])
        post = lambda outs, graph: detection.detections(model, graph, outs, input_hw)  # noqa: E731
    else:
        transform = spec.eval_set(root, spec.splits[1], size, backbone).transform
        pre = (lambda: transform(image)) if task == "cls" else (lambda: transform.image_only(image))
        post = {
            "seg": lambda outs, _: labels_at(np.asarray(outs[0]), h, w),
            "depth": lambda outs, _: F.interpolate(torch.as_tensor(outs[0]), size=(h, w), mode="bilinear",
                                                   align_corners=False),
            "cls": lambda outs, _: torch.as_tensor(outs[0]).softmax(-1).topk(5),
        }[task]
    return TaskInput(x.numpy(), pre, post, f"{w}x{h}", image)
