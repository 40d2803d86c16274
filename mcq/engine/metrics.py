"""Segmentation metrics with mmseg's definitions, from a whole-set confusion matrix."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassConfusionMatrix


def accumulate(confusion: MulticlassConfusionMatrix, logits: torch.Tensor, masks: list[torch.Tensor]) -> None:
    """Add a batch to the confusion matrix at each annotation's own resolution (logits upsampled bilinearly)."""
    for logit, mask in zip(logits, masks):
        up = F.interpolate(logit[None].float(), size=mask.shape, mode="bilinear", align_corners=False)
        confusion.update(up.argmax(1), mask[None])


def seg_metrics(confusion: torch.Tensor, class_names: list[str]) -> dict:
    """mIoU, mAcc, aAcc and per-class IoU/Acc from ``confusion[target, pred]`` (ignored pixels excluded).

    As in mmseg: per-class IoU = intersection / union over the whole set, per-class Acc = intersection /
    labelled area; means are taken over the classes where they are defined (union or labelled area > 0).
    """
    conf = confusion.double()
    inter = conf.diag()
    area_label, area_pred = conf.sum(1), conf.sum(0)
    union = area_label + area_pred - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.nan)
    acc = torch.where(area_label > 0, inter / area_label.clamp(min=1), torch.nan)
    total = area_label.sum()

    def num(x: torch.Tensor) -> float | None:
        return None if torch.isnan(x) else float(x)

    return {
        "mIoU": num(iou.nanmean()),
        "mAcc": num(acc.nanmean()),
        "aAcc": num(inter.sum() / total) if total > 0 else None,
        "per_class": {n: {"IoU": num(i), "Acc": num(a)} for n, i, a in zip(class_names, iou, acc)},
    }


def format_seg_table(metrics: dict) -> str:
    """The per-class table and the means, as printed by ``mcq eval seg``."""
    def pct(v: float | None) -> str:
        return "   -  " if v is None else f"{100 * v:6.2f}"

    width = max([len("class")] + [len(n) for n in metrics["per_class"]])
    lines = [f"{'class':<{width}}    IoU    Acc"]
    lines += [f"{n:<{width}} {pct(m['IoU'])} {pct(m['Acc'])}" for n, m in metrics["per_class"].items()]
    lines.append(f"mIoU {pct(metrics['mIoU'])}  mAcc {pct(metrics['mAcc'])}  aAcc {pct(metrics['aAcc'])}")
    return "\n".join(lines)
