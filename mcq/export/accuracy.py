"""The accuracy of an exported artifact against its checkpoint's (seg: mIoU, in points): both on the same validation
images at the artifact's input size with the same preprocessing, the checkpoint's inference form in PyTorch and the
artifact through its own runtime; the drop is the checkpoint's figure minus the artifact's."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
from torch import nn

from mcq.runtime.evaluate import seg_eval_set, seg_figures
from mcq.errors import McqError
from mcq.runtime.artifacts import torch_runner


class AccuracyCheck:
    """Measures the artifacts of ``model`` (a seg model in inference form at the size of ``meta``) on the first
    ``images`` validation images of ``data`` (None: all); the checkpoint's figure is measured once, when needed."""

    def __init__(self, model: nn.Module, meta: dict, data: str | Path | None, images: int | None):
        if images is not None and images < 0:
            raise McqError(f"--eval-images {images}: give a number of images (0: no accuracy measured)")
        self.model, self.class_names = model, meta["class_names"]
        self.ds = seg_eval_set(data, meta, meta["source_checkpoint"]["path"],
                               "the same objectInfo150.txt, or export with --eval-images 0")
        self.images = len(self.ds) if images is None else min(images, len(self.ds))

    def _miou(self, run: Callable[[np.ndarray], np.ndarray], desc: str) -> float:
        return 100 * seg_figures(run, self.ds, self.class_names, self.images, desc)["mIoU"]

    @cached_property
    def checkpoint(self) -> float:
        return self._miou(torch_runner(self.model), "mIoU of the checkpoint (torch)")

    def __call__(self, run: Callable[[np.ndarray], np.ndarray], name: str) -> dict:
        """The report's and sidecar's ``accuracy`` of the artifact ``name`` that ``run`` runs."""
        artifact = self._miou(run, f"mIoU of {name}")
        return {"metric": "mIoU", "checkpoint": self.checkpoint, "artifact": artifact,
                "drop": self.checkpoint - artifact, "images": self.images, "data": str(self.ds.root)}


def format_accuracy(name: str, acc: dict) -> str:
    """One line for the terminal: the artifact's figure, the checkpoint's, the drop."""
    return (f"{name}: {acc['metric']} {acc['artifact']:.2f} against {acc['checkpoint']:.2f} for the checkpoint in "
            f"PyTorch (drop {acc['drop']:.2f} points) on {acc['images']} validation images")
