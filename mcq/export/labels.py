"""``outputs="labels"`` (``mcq export --outputs labels``): a segmentation artifact that returns the class index of
every pixel instead of the per-class logits, the argmax taken in the graph.

A seg artifact's logits are already at input size (``SegModel`` upsamples them in its forward): what an app does
after it is the argmax over the K classes, on a K x H x W float tensor, and a resize to the photo. A labels
artifact returns ``[1, H, W]`` class indices (``Labels``); the app only resizes them (nearest).

How each format takes the argmax (MCi0 SemanticFPN, 150 classes, 512 px, 1 thread, `mcq profile` on this 2-core AMD
EPYC): XNNPACK has no argmax, so ExecuTorch runs it as a portable kernel after the delegate; over the classes made
last it costs less than the NHWC -> NCHW transpose of the logits that the delegate then skips (966 ms with logits,
895 with labels; over the channel axis of NCHW the argmax alone took 150 ms). onnxruntime's ``ArgMax`` took 180 ms
in either layout; ``onnx.py`` runs it as ``TopK(k=1)`` on logits made classes-last before the upsampling (676 ms,
as with logits). Core ML takes ``reduce_argmax`` on the channel axis as it is (not measured: no macOS here) and has
no uint8 outputs, so its labels are int32.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mcq.errors import McqError
from mcq.tasks.specs import task_spec

OUTPUTS = ("logits", "labels")  # what a seg artifact returns; other tasks return their head's output as it is
# per format (and eager PyTorch, for ``mcq profile``): the labels' dtype up to 256 classes (int32 beyond) and whether
# the argmax runs with the classes last (eager: 180 ms either way)
FORMS = {"onnx": ("uint8", True), "executorch": ("uint8", True), "coreml": ("int32", False), "torch": ("uint8", False)}


class Labels(nn.Module):
    """``model``'s class index per pixel, ``[N, H, W]`` of ``dtype``: the argmax over the classes (the first of equal
    maxima), taken over the last axis of the logits made classes-last when ``classes_last``."""

    def __init__(self, model: nn.Module, dtype: str, classes_last: bool):
        super().__init__()
        self.model, self.dtype, self.classes_last = model, getattr(torch, dtype), classes_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        index = logits.permute(0, 2, 3, 1).argmax(-1) if self.classes_last else logits.argmax(1)
        return index.to(self.dtype)


def check_outputs(task: str, outputs: str, source: str | Path = "") -> None:
    """A one-line McqError (naming ``source``, the checkpoint, when given) unless a ``task`` model can be exported
    with ``outputs``."""
    where = f"{source}: " if source else ""
    if outputs not in OUTPUTS:
        raise McqError(f"{where}--outputs {outputs}: not one of {', '.join(OUTPUTS)}")
    if outputs == "labels" and not task_spec(task).labels:
        raise McqError(f"{where}--outputs labels is for segmentation models, not {task_spec(task).title}: leave "
                       "--outputs out")


def labels_dtype(fmt: str, classes: int) -> str:
    """The dtype of the labels of a model of ``classes`` classes in ``fmt``."""
    return FORMS[fmt][0] if classes <= 256 else "int32"


def labels_metadata(meta: dict, fmt: str) -> dict:
    """``meta`` (a seg model's) for its artifact in ``fmt`` that returns labels."""
    _, k, h, w = meta["output"]["shape"]
    return {**meta, "output": {"name": "labels", "shape": [1, h, w], "dtype": labels_dtype(fmt, k),
                               "meaning": "class index per pixel at input resolution: the argmax of the logits over "
                                          "the classes, in the graph (the first of equal maxima)"}}


def labels_model(model: nn.Module, fmt: str, classes: int) -> Labels:
    """``Labels`` of ``model`` (of ``classes`` classes) as ``fmt`` takes it."""
    return Labels(model, labels_dtype(fmt, classes), FORMS[fmt][1]).eval()
