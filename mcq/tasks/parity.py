"""How close an artifact's outputs are to PyTorch's: each task's measure (``TaskSpec.parity``) and the verdict
against its thresholds (``TaskSpec.parity_thresholds``).

seg: share of pixels whose argmax class matches PyTorch's; cls: share of images whose top-1 class matches; depth:
mean relative error of the depth map; every task: max |error| / max |PyTorch's output| ("max_rel"); det: share of
detections matched (same class, IoU >= 0.5), max box error / largest box coordinate, max score error, share of mask
pixels (> 0.5) that agree within matched detections. A seg artifact that returns labels is judged by its agreement
alone (``labels_parity``)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from mcq.tasks.detection import DETECTIONS

MATCH_IOU = 0.5
Run = Callable[[np.ndarray], np.ndarray]  # one NCHW float32 image -> the artifact's output
RunAll = Callable[[np.ndarray], list[np.ndarray]]  # ... -> every output, as a runtime's ``run_all`` gives them


def first_output(run_all: RunAll | None) -> Run | None:
    """``run_all`` as a ``Run`` of its first output (None stays None: an artifact that cannot run here)."""
    return None if run_all is None else lambda x: run_all(x)[0]


def output_parity(run: Run, model: torch.nn.Module, images: torch.Tensor, precision: str, thresholds: dict,
                  measure: str) -> dict:
    """Run ``run`` and ``model`` on each of ``images``: max abs / rel error and ``measure``, "agreement" (the share
    of argmax over axis 1 that match) or "mean_rel" (the mean relative error)."""
    max_abs, max_ref, hits, total = 0.0, 0.0, 0.0, 0
    for x in images:
        with torch.no_grad():
            ref = model(x[None]).numpy()
        out = np.asarray(run(x[None].numpy()), dtype=np.float32).reshape(ref.shape)
        max_abs = max(max_abs, float(np.abs(out - ref).max()))
        max_ref = max(max_ref, float(np.abs(ref).max()))
        if measure == "mean_rel":
            hits += float((np.abs(out - ref) / np.maximum(np.abs(ref), 1e-6)).sum())
            total += ref.size
        else:
            hits += int((out.argmax(1) == ref.argmax(1)).sum())
            total += ref.size // ref.shape[1]
    return judge({"images": len(images), "max_abs": max_abs, "max_rel": max_abs / max(max_ref, 1e-12),
                  measure: hits / total, "precision": precision, "thresholds": thresholds[precision],
                  "numerics": "compared"})


def labels_parity(run: Run, model: torch.nn.Module, images: torch.Tensor, precision: str, thresholds: dict) -> dict:
    """The share of pixels whose class index equals that of ``model`` (the labels model in PyTorch), by
    ``thresholds`` less max_rel: integers are equal or not, so there is no max abs / max rel error."""
    hits = total = 0
    for x in images:
        with torch.no_grad():
            ref = model(x[None]).numpy()
        hits += int((np.asarray(run(x[None].numpy())).reshape(ref.shape) == ref).sum())
        total += ref.size
    kept = {k: v for k, v in thresholds[precision].items() if k != "max_rel"}
    return judge({"images": len(images), "agreement": hits / total, "precision": precision, "thresholds": kept,
                  "numerics": "compared", "note": "labels: class indices compared for equality, no max abs / max rel "
                                                  "error"})


def _match(ref: dict, out: dict) -> list[tuple[int, int]]:
    """Pairs (i, j) of ``ref``'s and ``out``'s detections: greedily in ``ref``'s (score) order, the unmatched
    detection of ``out`` of the same class with the highest IoU, if at least ``MATCH_IOU``."""
    from torchvision.ops import box_iou

    iou = box_iou(ref["boxes"], out["boxes"]) * (ref["labels"][:, None] == out["labels"][None, :])
    pairs = []
    for i in range(len(iou)):
        if iou.shape[1] and iou[i].max() >= MATCH_IOU:
            j = int(iou[i].argmax())
            pairs.append((i, j))
            iou[:, j] = -1
    return pairs


def det_parity(run: Callable[[np.ndarray], dict], model: torch.nn.Module, images: torch.Tensor, precision: str,
               thresholds: dict) -> dict:
    """Detections of ``run`` (a dict per image) against ``model``'s (``mcq.tasks.detection.DetGraph``: boxes,
    labels, scores, masks) on each image."""
    matched = total = 0
    box_err = score_err = max_ref = mask_hits = mask_total = 0.0
    for x in images:
        with torch.no_grad():
            ref = dict(zip(DETECTIONS, model(x[None])))
        out = {k: torch.as_tensor(v) for k, v in run(x[None].numpy()).items()}
        pairs = _match(ref, out)
        matched, total = matched + len(pairs), total + max(len(ref["boxes"]), len(out["boxes"]))
        max_ref = max(max_ref, float(ref["boxes"].abs().max()) if len(ref["boxes"]) else 0.0)
        if pairs:
            i, j = (torch.tensor(p) for p in zip(*pairs))
            box_err = max(box_err, float((ref["boxes"][i] - out["boxes"][j]).abs().max()))
            score_err = max(score_err, float((ref["scores"][i] - out["scores"][j]).abs().max()))
            mask_hits += int(((ref["masks"][i] > 0.5) == (out["masks"][j] > 0.5)).sum())
            mask_total += ref["masks"][i].numel()
    return judge({"images": len(images), "detections": total, "max_abs": box_err,
                  "max_rel": box_err / max(max_ref, 1e-12), "agreement": matched / total if total else 1.0,
                  "score_abs": score_err, "mask_agreement": mask_hits / mask_total if mask_total else 1.0,
                  "precision": precision, "thresholds": thresholds[precision], "numerics": "compared"})


def judge(result: dict) -> dict:
    """Add ``passed`` and, when it fails, ``why``."""
    t = result["thresholds"]
    why = []
    if "agreement" in t and result["agreement"] < t["agreement"]:
        why.append(f"agreement {100 * result['agreement']:.2f}% < {100 * t['agreement']:.1f}%")
    if "mean_rel" in t and result["mean_rel"] > t["mean_rel"]:
        why.append(f"mean relative error {result['mean_rel']:.2e} > {t['mean_rel']:.0e}")
    if "score_abs" in t and result["score_abs"] > t["score_abs"]:
        why.append(f"max score error {result['score_abs']:.2e} > {t['score_abs']:.0e}")
    if "mask_agreement" in t and result["mask_agreement"] < t["mask_agreement"]:
        why.append(f"mask agreement {100 * result['mask_agreement']:.2f}% < {100 * t['mask_agreement']:.1f}%")
    if "max_rel" in t and result["max_rel"] > t["max_rel"]:
        why.append(f"max abs error {result['max_rel']:.2e} of the largest output > {t['max_rel']:.0e}")
    result["passed"] = not why
    if why:
        result["why"] = "; ".join(why)
    return result
