"""How far the RoIAlign a Mask R-CNN pools with moves its results: torchvision's against mmdet's, side by side.

torchvision's Mask R-CNN pools RoIs unaligned with two samples per bin; mmdet's aligned (half-pixel) with as many
samples as a bin is wide (``DetModelConfig.roi_align``: "torchvision" or "mmdet"; ``mcq import mmdet`` gives
"mmdet"). This script evaluates one checkpoint's weights both ways on the same data: box and mask AP
(``mcq eval det``'s), and, image by image, how many of the detections pooled as the checkpoint pools (all, and those
scoring 0.5 or more) have a same-class partner among those pooled the other way, at IoU >= 0.9 and 0.5, with the
partners' mean IoU and score gap.

    .venv/bin/python benchmarks/mmdet_roi_align.py --checkpoint imported/mci2_maskrcnn.ckpt --data coco
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torchvision.ops import box_iou
from torchvision.transforms.functional import to_tensor

from mcq.data.coco import COCODetection
from mcq.tasks.checkpoint import read_checkpoint
from mcq.train.evaluate import evaluate
from mcq.io import load_state

POOLS = ("torchvision", "mmdet")


def pooled_as(checkpoint: str | Path, roi_align: str, folder: Path) -> Path:
    """A copy of ``checkpoint`` whose model pools its RoIs with ``roi_align``."""
    ckpt = load_state(checkpoint)
    ckpt["hyper_parameters"]["model"]["roi_align"] = roi_align
    path = folder / f"{roi_align}.ckpt"
    torch.save(ckpt, path)
    return path


def match(a: dict, b: dict, iou: float) -> tuple[int, float, float]:
    """Detections of ``a`` with a same-class detection of ``b`` at IoU >= ``iou``: count, summed IoU and |score|
    gap (each ``b`` detection partners one at most, best score first)."""
    ious = box_iou(a["boxes"], b["boxes"]) * (a["labels"][:, None] == b["labels"][None, :])
    taken, n, iou_sum, gap = set(), 0, 0.0, 0.0
    for i in range(len(ious)):
        row = ious[i].clone()
        row[list(taken)] = 0
        j = int(row.argmax()) if len(row) else -1
        if j >= 0 and row[j] >= iou:
            taken.add(j)
            n, iou_sum, gap = n + 1, iou_sum + float(row[j]), gap + abs(float(a["scores"][i] - b["scores"][j]))
    return n, iou_sum, gap


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="an mcq detection checkpoint (e.g. from `mcq import mmdet`)")
    p.add_argument("--data", required=True, help="a COCO-layout dataset (its val split is used)")
    p.add_argument("--images", type=int, default=50, help="val images of the detection matching (default 50)")
    p.add_argument("--min-score", type=float, nargs="+", default=[0.05, 0.5],
                   help="score thresholds of the detections matched (default 0.05, the model's, and 0.5)")
    args = p.parse_args()
    own = read_checkpoint(args.checkpoint, "det").model.cfg.roi_align
    other = next(x for x in POOLS if x != own)
    ds = COCODetection(args.data, "val")
    images = [to_tensor(ds[i][0]) for i in range(min(args.images, len(ds)))]
    ap, dets = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for pool in (own, other):
            path = pooled_as(args.checkpoint, pool, Path(tmp))
            ap[pool] = evaluate("det", path, args.data, workers=0, accelerator="cpu")
            model = read_checkpoint(path, "det").model.eval()
            with torch.no_grad():
                dets[pool] = [model([image])[0] for image in images]
    for pool, m in ap.items():
        print(f"RoIAlign {pool:11s}{' (the checkpoint' + chr(39) + 's)' if pool == own else '':18s}: box AP "
              f"{100 * (m['bbox']['AP'] or 0):.2f}  mask AP {100 * (m['segm']['AP'] or 0):.2f}")
    for score in args.min_score:
        kept = [({k: v[a["scores"] >= score] for k, v in a.items()}, b) for a, b in zip(dets[own], dets[other])]
        total = sum(len(a["boxes"]) for a, _ in kept)
        print(f"{total} detections of score >= {score} ({own}'s RoIAlign) on {len(images)} val images:")
        for iou in (0.9, 0.5):
            n, iou_sum, gap = (sum(v) for v in zip(*(match(a, b, iou) for a, b in kept)))
            print(f"  with a partner pooled as {other} at IoU >= {iou}: {n} ({100 * n / max(total, 1):.1f}%), "
                  f"mean IoU {iou_sum / max(n, 1):.4f}, mean score gap {gap / max(n, 1):.4f}")


if __name__ == "__main__":
    main()
