"""Task metrics: segmentation with mmseg's definitions (from a whole-set confusion matrix), NYUv2 depth with the
standard evaluation, classification tables, COCO box and mask AP through pycocotools."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import Metric
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


# --- depth: the standard NYUv2 evaluation (Eigen et al.; as in BTS, GLPDepth, "Dark Secrets of MIM") ----------

DEPTH_KEYS = ("d1", "d2", "d3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10")
MIN_DEPTH, MAX_DEPTH = 1e-3, 10.0
# Eigen's crop on NYUv2's 480x640 frames: rows 45..470, columns 41..600 (as fractions, so any size has one)
EIGEN_CROP = (45 / 480, 471 / 480, 41 / 640, 601 / 640)


def eigen_mask(height: int, width: int) -> torch.Tensor:
    """The pixels inside Eigen's crop for a ``height`` x ``width`` frame (exactly Eigen's on 480x640)."""
    top, bottom, left, right = EIGEN_CROP
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[round(top * height):round(bottom * height), round(left * width):round(right * width)] = True
    return mask


def depth_errors(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
    """The standard errors over matching 1-D tensors of valid pixels (metres): delta < 1.25^k, AbsRel, SqRel,
    RMSE, RMSE log, log10."""
    pred, gt = pred.double(), gt.double()
    ratio = torch.maximum(gt / pred, pred / gt)
    return {
        "d1": float((ratio < 1.25).double().mean()),
        "d2": float((ratio < 1.25**2).double().mean()),
        "d3": float((ratio < 1.25**3).double().mean()),
        "abs_rel": float(((gt - pred).abs() / gt).mean()),
        "sq_rel": float(((gt - pred) ** 2 / gt).mean()),
        "rmse": float(((gt - pred) ** 2).mean().sqrt()),
        "rmse_log": float(((gt.log() - pred.log()) ** 2).mean().sqrt()),
        "log10": float((gt.log10() - pred.log10()).abs().mean()),
    }


class DepthMetrics(Metric):
    """Per-image errors averaged over images (as BTS and GLPDepth report them), on pixels inside Eigen's crop
    with ``min_depth < gt < max_depth``; predictions are upsampled to the ground truth and clamped to that range."""

    full_state_update = False

    def __init__(self, min_depth: float = MIN_DEPTH, max_depth: float = MAX_DEPTH):
        super().__init__()
        self.min_depth, self.max_depth = min_depth, max_depth
        for k in DEPTH_KEYS:
            self.add_state(k, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, gts: list[torch.Tensor]) -> None:
        """``preds``: N x 1 x h x w depths in metres; ``gts``: N depth maps at their own sizes (0 = no measurement)."""
        for pred, gt in zip(preds, gts):
            up = F.interpolate(pred[None].float(), size=gt.shape, mode="bilinear", align_corners=False)[0, 0]
            valid = (gt > self.min_depth) & (gt < self.max_depth) & eigen_mask(*gt.shape).to(gt.device)
            if not valid.any():
                continue
            errors = depth_errors(up[valid].clamp(self.min_depth, self.max_depth), gt[valid])
            for k, v in errors.items():
                setattr(self, k, getattr(self, k) + v)
            self.images += 1

    def compute(self) -> dict[str, float | None]:
        n = int(self.images)
        return {k: float(getattr(self, k)) / n if n else None for k in DEPTH_KEYS} | {"images": n}


def format_depth_table(metrics: dict) -> str:
    """The standard NYUv2 row: accuracies (higher is better) then errors (lower is better)."""
    def cell(v: float | None) -> str:
        return f"{'-':>9}" if v is None else f"{v:9.4f}"

    return "\n".join([
        "".join(f"{k:>9}" for k in DEPTH_KEYS),
        "".join(cell(metrics[k]) for k in DEPTH_KEYS),
        f"RMSE {cell(metrics['rmse']).strip()} m over {metrics['images']} images (Eigen crop, {MIN_DEPTH:g} < depth < "
        f"{MAX_DEPTH:g} m)",
    ])


# --- classification -----------------------------------------------------------------------------------------------


def format_cls_table(metrics: dict) -> str:
    """Top-1 and top-5 accuracy in percent."""
    return "\n".join([f"{'top1':>7} {'top5':>7}  images",
                      f"{100 * metrics['top1']:7.2f} {100 * metrics['top5']:7.2f}  {metrics['images']}"])


# --- detection and instance segmentation: COCO's AP through pycocotools' COCOeval -----------------------------------

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]
IOU_TYPES = {"bbox": "box", "segm": "mask"}


def coco_results(pred: dict, image_id: int, category_ids: list[int], mask_threshold: float = 0.5) -> list[dict]:
    """One image's torchvision detections (``boxes`` xyxy, ``labels`` 1..K, ``scores``, ``masks`` N x 1 x H x W
    probabilities) as COCO result entries: ``bbox`` as [x, y, w, h], ``segmentation`` as compressed RLE of the mask
    thresholded at ``mask_threshold`` (as torchvision's and detectron2's evaluations do)."""
    from pycocotools import mask as mask_utils

    boxes = pred["boxes"].detach().float().cpu()
    boxes[:, 2:] -= boxes[:, :2]
    rles = []
    if "masks" in pred and len(boxes):
        binary = (pred["masks"][:, 0] > mask_threshold).cpu().numpy().astype(np.uint8)
        rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
    out = []
    for k, (box, label, score) in enumerate(zip(boxes.tolist(), pred["labels"].tolist(), pred["scores"].tolist())):
        r = {"image_id": int(image_id), "category_id": category_ids[label - 1], "bbox": box, "score": float(score)}
        if rles:
            r["segmentation"] = {"size": list(rles[k]["size"]), "counts": rles[k]["counts"].decode("ascii")}
        out.append(r)
    return out


def coco_metrics(gt, results: list[dict], image_ids: list[int], iou_types: tuple[str, ...] = ("bbox", "segm")) -> dict:
    """COCOeval of ``results`` against the ground truth ``gt`` (a pycocotools ``COCO``) on ``image_ids``, for each
    of ``iou_types``: AP (IoU .50:.95), AP50, AP75, APs/APm/APl, and AP per class, as fractions (None where
    COCOeval has no ground truth to score: -1). Mask AP measures size by mask area (detectron2 drops the result's
    box for it, else pycocotools would take the box's area)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    metrics: dict = {"images": len(set(image_ids))}
    for iou_type in iou_types:
        dets = [{k: v for k, v in r.items() if not (iou_type == "segm" and k == "bbox")} for r in results]
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
            if dets:
                dt = gt.loadRes(dets)
            else:  # loadRes cannot take an empty list; nothing detected is an AP of 0
                dt = COCO()
                dt.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []}
                dt.createIndex()
            ev = COCOeval(gt, dt, iou_type)
            ev.params.imgIds = sorted(set(image_ids))
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        m = {k: (None if v < 0 else float(v)) for k, v in zip(COCO_KEYS, ev.stats[:6])}
        precision = ev.eval["precision"][:, :, :, 0, -1]  # IoU x recall x class, all areas, 100 detections
        per_class = {}
        for k, cat in enumerate(ev.params.catIds):
            p = precision[:, :, k]
            per_class[gt.cats[cat]["name"]] = float(p[p > -1].mean()) if (p > -1).any() else None
        metrics[iou_type] = {**m, "per_class": per_class}
    return metrics


def format_det_table(metrics: dict) -> str:
    """Box and mask AP (COCO's), then AP per class, as printed by ``mcq eval det``."""
    def pct(v: float | None) -> str:
        return f"{'-':>6}" if v is None else f"{100 * v:6.2f}"

    types = [t for t in IOU_TYPES if t in metrics]
    lines = [f"{'':<5}" + "".join(f"{k:>7}" for k in COCO_KEYS)]
    lines += [f"{IOU_TYPES[t]:<5}" + "".join(f" {pct(metrics[t][k])}" for k in COCO_KEYS) for t in types]
    names = list(metrics[types[0]]["per_class"])
    width = max([len("class")] + [len(n) for n in names])
    lines.append(f"{'class':<{width}}" + "".join(f" {IOU_TYPES[t] + ' AP':>7}" for t in types))
    lines += [f"{n:<{width}}" + "".join(f"  {pct(metrics[t]['per_class'][n])}" for t in types) for n in names]
    summary = "  ".join(f"{IOU_TYPES[t]} AP {pct(metrics[t]['AP']).strip()}" for t in types)
    lines.append(f"{summary}  over {metrics['images']} images (COCOeval, IoU .50:.95)")
    return "\n".join(lines)


# --- image-text retrieval ---------------------------------------------------------------------------------------


def retrieval_recall(similarity: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Recall@k of paired retrieval from a square image x text ``similarity`` matrix whose diagonal holds the true
    pairs: ``i2t_R@k`` is the share of images whose own text ranks in their top k texts, ``t2i_R@k`` the converse.
    Ties count against the true pair (its rank is the number of others scoring at least as high, plus one)."""
    n = similarity.shape[0]
    true = similarity.diagonal()
    out = {}
    for name, sim, own in (("i2t", similarity, true[:, None]), ("t2i", similarity.T, true[:, None])):
        rank = (sim >= own).sum(1)  # the pair itself plus every other scoring at least as high
        for k in ks:
            out[f"{name}_R@{k}"] = float((rank <= k).float().mean()) if n else 0.0
    return out


def format_clip_table(metrics: dict) -> str:
    """Image->text and text->image recall@1/5 in percent, per caption kind validated, with chance level."""
    lines = [f"{'captions':<9} {'i2t R@1':>8} {'i2t R@5':>8} {'t2i R@1':>8} {'t2i R@5':>8}  pairs (chance R@1)"]
    for kind, m in metrics["recall"].items():
        n = metrics["pairs"]
        lines.append(f"{kind:<9} {100 * m['i2t_R@1']:8.2f} {100 * m['i2t_R@5']:8.2f} {100 * m['t2i_R@1']:8.2f} "
                     f"{100 * m['t2i_R@5']:8.2f}  {n} ({100 / max(n, 1):.2f})")
    if metrics.get("skipped_images"):
        lines.append(f"skipped {metrics['skipped_images']} undecodable training images")
    return "\n".join(lines)
