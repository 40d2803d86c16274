"""A segmentation model's output as class indices at an image's size, and as a colour mask."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


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
