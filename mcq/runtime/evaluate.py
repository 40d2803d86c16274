"""The accuracy of a segmentation model through its own runtime (``evaluate_seg_model``: ONNX, ExecuTorch, or a
checkpoint in plain PyTorch): what ships, scored as ``mcq eval seg`` scores its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torchmetrics.classification import MulticlassConfusionMatrix
from tqdm import tqdm

from mcq.data import ADE20K, IGNORE_INDEX, SegTransform, default_seg_data
from mcq.io import write_json
from mcq.runtime.artifacts import open_model
from mcq.tasks.metrics import seg_metrics
from mcq.tasks.classmaps import labels_at
from mcq.tasks.specs import check_classes


def seg_eval_set(data: str | Path | None, meta: dict, model: str | Path,
                 hint: str = "the same objectInfo150.txt") -> ADE20K:
    """The validation split of ``data`` (default: the embedded dataset) as the seg model of ``meta`` takes it (its
    input size, mean and std), masks at their own size; a one-line error naming ``model`` if the classes differ."""
    data = Path(data) if data else default_seg_data()
    ds = ADE20K(data, "validation", SegTransform(meta["input"]["shape"][-1], False, meta["input"]["mean"],
                                                 meta["input"]["std"]))
    check_classes(ds.class_names, meta["class_names"], data, model, hint)
    return ds


def seg_figures(run: Callable[[np.ndarray], np.ndarray], ds: ADE20K, class_names: list[str], n: int | None = None,
                desc: str = "eval") -> dict:
    """mIoU, mAcc, aAcc and per-class figures of ``run`` (one normalised NCHW image -> logits or labels) on the first
    ``n`` images of ``ds`` (None: all), at each annotation's resolution."""
    confusion = MulticlassConfusionMatrix(len(class_names), ignore_index=IGNORE_INDEX)
    for i in tqdm(range(len(ds) if n is None else min(n, len(ds))), desc=desc, unit="img"):
        image, mask = ds[i]
        confusion.update(torch.from_numpy(labels_at(run(image[None].numpy()), *mask.shape))[None], mask[None])
    return seg_metrics(confusion.compute(), class_names)


def evaluate_seg_model(
    model: str | Path, data: str | Path | None = None, json_out: str | Path | None = None, threads: int | None = None,
) -> dict:
    """Like ``evaluate_seg``, through the model's own runtime: the mIoU of what ships (ONNX, ExecuTorch, ...)."""
    opened = open_model(model, threads, task="seg")
    meta = opened.meta
    ds = seg_eval_set(data, meta, model)
    metrics = {"model": str(model), "runtime": opened.runtime, "precision": meta.get("precision", "fp32"),
               "data": str(ds.root), "img_size": meta["input"]["shape"][-1], "encoder": meta["encoder"],
               "head": meta["head"], **seg_figures(opened.run, ds, meta["class_names"],
                                                    desc=f"eval {Path(model).name} ({opened.runtime})")}
    if json_out:
        write_json(json_out, metrics)
    return metrics
