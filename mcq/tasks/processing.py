"""Pre- and post-processing around a model: dataset images as an artifact takes them, and a seg model's output as
class indices and a colour mask (detection's own: ``mcq.tasks.detection``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

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


def colourize(mask: np.ndarray, palette: list[list[int]]) -> Image.Image:
    """A palette PNG image of a class-index mask (the indices stay readable as pixel values)."""
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette([c for rgb in palette for c in rgb])
    return im


def is_labels(output: np.ndarray) -> bool:
    """Whether a seg model's output holds class indices (``mcq export --outputs labels``), not logits."""
    return not np.issubdtype(output.dtype, np.floating)


def labels_at(output: np.ndarray, height: int, width: int) -> np.ndarray:
    """Post-processing to class indices at the image's size: logits ``[1, K, h, w]`` upsampled (bilinear), then
    argmax; labels ``[1, h, w]`` resized (nearest: the pixel whose centre is nearest)."""
    if is_labels(output):
        h, w = output.shape[-2:]
        rows, cols = (((np.arange(n) + 0.5) * m / n).astype(int) for n, m in ((height, h), (width, w)))
        return output[0][rows[:, None], cols]
    up = F.interpolate(torch.from_numpy(output).float(), size=(height, width), mode="bilinear", align_corners=False)
    return up.argmax(1)[0].numpy()
