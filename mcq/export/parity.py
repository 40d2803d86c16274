"""The parity check: an exported artifact against the PyTorch model on the same dataset images."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from mcq.export.labels import Labels

# seg: share of pixels whose argmax class matches PyTorch's; cls: share of images whose top-1 class matches;
# depth: mean relative error of the depth map; every task: max |error| / max |PyTorch's output| ("max_rel");
# det: share of detections matched (same class, IoU >= 0.5), max box error / largest box coordinate, max score
# error, share of mask pixels (> 0.5) that agree within matched detections. Det exports fp32 only. A seg artifact
# that returns labels is judged by its agreement alone (``labels_parity``).
THRESHOLDS = {
    "seg": {"fp32": {"agreement": 0.999, "max_rel": 1e-3}, "fp16": {"agreement": 0.99}, "int8": {"agreement": 0.99}},
    "cls": {"fp32": {"agreement": 1.0, "max_rel": 1e-3}, "fp16": {"agreement": 0.95}, "int8": {"agreement": 0.9}},
    "depth": {"fp32": {"mean_rel": 1e-4, "max_rel": 1e-3}, "fp16": {"mean_rel": 1e-2}, "int8": {"mean_rel": 5e-2}},
    "det": {"fp32": {"agreement": 0.99, "max_rel": 1e-3, "score_abs": 1e-3, "mask_agreement": 0.999}},
}
MATCH_IOU = 0.5
# what a det artifact holds (``mcq.tasks.detection``), said in the status column
GRAPH_NOTE = {"full": "full model", "features": "encoder+FPN+RPN head; rest in Python: mcq.tasks.detection.detect"}


def parity(run: Callable[[np.ndarray], np.ndarray], model: torch.nn.Module, images: torch.Tensor, precision: str,
           task: str = "seg") -> dict:
    """Run ``run`` (one NCHW float32 image at a time) and ``model`` on ``images``; compare; judge by ``precision``.

    For det, ``run`` returns a dict and ``model`` a tuple of boxes, labels, scores, masks (``det_parity``); a
    ``Labels`` model gives class indices (``labels_parity``)."""
    if task == "det":
        return det_parity(run, model, images, precision)
    if isinstance(model, Labels):
        return labels_parity(run, model, images, precision)
    max_abs, max_ref, hits, total = 0.0, 0.0, 0.0, 0
    for x in images:
        with torch.no_grad():
            ref = model(x[None]).numpy()
        out = np.asarray(run(x[None].numpy()), dtype=np.float32).reshape(ref.shape)
        max_abs = max(max_abs, float(np.abs(out - ref).max()))
        max_ref = max(max_ref, float(np.abs(ref).max()))
        if task == "depth":
            hits += float((np.abs(out - ref) / np.maximum(np.abs(ref), 1e-6)).sum())
            total += ref.size
        else:
            hits += int((out.argmax(1) == ref.argmax(1)).sum())
            total += ref.size // ref.shape[1]
    result = {"images": len(images), "max_abs": max_abs, "max_rel": max_abs / max(max_ref, 1e-12),
              "mean_rel" if task == "depth" else "agreement": hits / total, "precision": precision,
              "thresholds": THRESHOLDS[task][precision], "numerics": "compared"}
    return judge(result)


def labels_parity(run: Callable[[np.ndarray], np.ndarray], model: Labels, images: torch.Tensor,
                  precision: str) -> dict:
    """The share of pixels whose class index equals that of ``model`` (the same ``Labels`` wrapper in PyTorch), by
    the thresholds of seg; integers are equal or not, so there is no max abs / max rel error."""
    hits = total = 0
    for x in images:
        with torch.no_grad():
            ref = model(x[None]).numpy()
        hits += int((np.asarray(run(x[None].numpy())).reshape(ref.shape) == ref).sum())
        total += ref.size
    thresholds = {k: v for k, v in THRESHOLDS["seg"][precision].items() if k != "max_rel"}
    return judge({"images": len(images), "agreement": hits / total, "precision": precision, "thresholds": thresholds,
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


def det_parity(run: Callable[[np.ndarray], dict], model: torch.nn.Module, images: torch.Tensor,
               precision: str) -> dict:
    """Detections of ``run`` against ``model``'s (``mcq.tasks.detection.DetGraph``) on each image."""
    from mcq.tasks.detection import DETECTIONS

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
    result = {"images": len(images), "detections": total, "max_abs": box_err, "max_rel": box_err / max(max_ref, 1e-12),
              "agreement": matched / total if total else 1.0, "score_abs": score_err,
              "mask_agreement": mask_hits / mask_total if mask_total else 1.0, "precision": precision,
              "thresholds": THRESHOLDS["det"][precision], "numerics": "compared"}
    return judge(result)


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


def format_parity_table(reports: list[dict]) -> str:
    """One row per artifact: max abs / rel error, agreement (seg, cls) or mean relative error (depth), status."""
    lines = [f"{'artifact':<34} {'max abs':>9} {'max rel':>9} {'agree %':>9}  status"]
    for r in reports:
        p = r.get("parity", {})
        if p.get("numerics") == "compared":
            agree = f"{100 * p['agreement']:>9.3f}" if "agreement" in p else f"{'rel ' + format(p['mean_rel'], '.0e'):>9}"
            errors = f"{p['max_abs']:>9.2e} {p['max_rel']:>9.2e}" if "max_abs" in p else f"{'-':>9} {'-':>9}"
            nums = f"{errors} {agree}"
        else:
            nums = f"{'-':>9} {'-':>9} {'-':>9}"
        status = r["status"] + (f" ({r['why']})" if r.get("why") else "")
        status += f" [{GRAPH_NOTE[r['graph']]}]" if r.get("graph") else ""
        lines.append(f"{r['artifact']:<34} {nums}  {status}")
    return "\n".join(lines)
