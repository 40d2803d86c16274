"""The metadata every artifact carries (inside it where the format allows, and as a JSON sidecar)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mcq
from mcq.tasks.checkpoint import Trained


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


_RESIZE = ("stretch the whole image to the input size (single scale)",
           "scale the long side to the input size keeping the aspect ratio, pad right and bottom with the mean "
           "colour (mcq.tasks.detection.letterbox)")


def _output(task: Trained, shape: tuple[int, int]) -> dict:
    """What the artifact returns, per task."""
    h, w = shape
    if task.task == "seg":
        k = len(task.class_names)
        return {"name": "logits", "shape": [1, k, h, w], "dtype": "float32",
                "meaning": "per-class scores at input resolution; argmax over dim 1 is the class index"}
    if task.task == "cls":
        return {"name": "logits", "shape": [1, len(task.class_names)], "dtype": "float32",
                "meaning": "per-class scores; argmax over dim 1 is the class index, softmax the probabilities"}
    return {"name": "depth", "shape": [1, 1, h, w], "dtype": "float32", "units": "metres",
            "max_depth": task.model.cfg.max_depth,
            "meaning": "depth per pixel at input resolution, in metres"}


def outputs(meta: dict) -> list[dict]:
    """The artifact's outputs (name, shape, meaning) in order: one for seg/depth/cls, several for det."""
    return meta.get("outputs") or [meta["output"]]


def _outputs(task: Trained, shape: tuple[int, int]) -> dict:
    if task.task == "det":  # the whole model by default; the exporter records the graph each format holds
        from mcq.tasks.detection import graph_metadata

        return graph_metadata(task.model, "full", shape)
    return {"output": _output(task, shape)}


def task_metadata(task: Trained, shape: tuple[int, int], checkpoint: str | Path) -> dict:
    """Everything an app or ``mcq predict`` needs to use an artifact of ``task`` (a trained model,
    ``mcq.tasks.checkpoint``) that takes one RGB image of ``shape`` (height, width); nothing else is assumed."""
    model, recipe = task.model, task.recipe
    names = task.class_names
    head = {"seg": getattr(model.cfg, "head", ""), "cls": "linear", "depth": "depth", "det": "maskrcnn"}[task.task]
    return {
        "task": task.task,
        "encoder": model.cfg.encoder,
        "head": head,
        **({"class_names": list(names), "palette": task.palette or palette(len(names))}
           if names else {}),
        "input": {
            "name": "image", "shape": [1, 3, *shape], "layout": "NCHW", "dtype": "float32",
            "color": "RGB", "range": [0.0, 1.0], "mean": list(model.encoder.mean), "std": list(model.encoder.std),
            "resize": _RESIZE[task.task == "det"],
        },
        **_outputs(task, shape),
        "source_checkpoint": {"path": Path(checkpoint).name, "sha256": sha256(checkpoint)},
        "recipe": recipe,
        "mcq_version": mcq.__version__,
    }
