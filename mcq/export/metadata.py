"""The metadata every artifact carries (inside it where the format allows, and as a JSON sidecar)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mcq
from mcq.models.segmentor import SegModel


def palette(n: int) -> list[list[int]]:
    """``n`` distinct RGB colours (the PASCAL VOC colour map: bits of the index spread over R, G, B)."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i + 1  # skip black, which reads as "nothing"
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours.append([r, g, b])
    return colours


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def seg_metadata(model: SegModel, class_names: list[str], img_size: int, checkpoint: str | Path, recipe: dict) -> dict:
    """Everything an app or ``mcq predict`` needs to use a segmentation artifact; nothing else is assumed."""
    return {
        "task": "seg",
        "encoder": model.cfg.encoder,
        "head": model.cfg.head,
        "class_names": list(class_names),
        "palette": palette(len(class_names)),
        "input": {
            "name": "image", "shape": [1, 3, img_size, img_size], "layout": "NCHW", "dtype": "float32",
            "color": "RGB", "range": [0.0, 1.0], "mean": list(model.encoder.mean), "std": list(model.encoder.std),
            "resize": "stretch the whole image to the input size (single scale)",
        },
        "output": {
            "name": "logits", "shape": [1, len(class_names), img_size, img_size],
            "meaning": "per-class scores at input resolution; argmax over dim 1 is the class index",
        },
        "source_checkpoint": {"path": Path(checkpoint).name, "sha256": sha256(checkpoint)},
        "recipe": recipe,
        "mcq_version": mcq.__version__,
    }
