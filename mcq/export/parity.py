"""The parity check: an exported artifact against the PyTorch model on the same dataset images."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

# seg: share of pixels whose argmax class matches PyTorch's; cls: share of images whose top-1 class matches;
# depth: mean relative error of the depth map; every task: max |error| / max |PyTorch's output| ("max_rel")
THRESHOLDS = {
    "seg": {"fp32": {"agreement": 0.999, "max_rel": 1e-3}, "fp16": {"agreement": 0.99}, "int8": {"agreement": 0.99}},
    "cls": {"fp32": {"agreement": 1.0, "max_rel": 1e-3}, "fp16": {"agreement": 0.95}, "int8": {"agreement": 0.9}},
    "depth": {"fp32": {"mean_rel": 1e-4, "max_rel": 1e-3}, "fp16": {"mean_rel": 1e-2}, "int8": {"mean_rel": 5e-2}},
}


def parity(run: Callable[[np.ndarray], np.ndarray], model: torch.nn.Module, images: torch.Tensor, precision: str,
           task: str = "seg") -> dict:
    """Run ``run`` (one NCHW float32 image at a time) and ``model`` on ``images``; compare; judge by ``precision``."""
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


def judge(result: dict) -> dict:
    """Add ``passed`` and, when it fails, ``why``."""
    t = result["thresholds"]
    why = []
    if "agreement" in t and result["agreement"] < t["agreement"]:
        why.append(f"agreement {100 * result['agreement']:.2f}% < {100 * t['agreement']:.1f}%")
    if "mean_rel" in t and result["mean_rel"] > t["mean_rel"]:
        why.append(f"mean relative error {result['mean_rel']:.2e} > {t['mean_rel']:.0e}")
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
            nums = f"{p['max_abs']:>9.2e} {p['max_rel']:>9.2e} {agree}"
        else:
            nums = f"{'-':>9} {'-':>9} {'-':>9}"
        status = r["status"] + (f" ({r['why']})" if r.get("why") else "")
        lines.append(f"{r['artifact']:<34} {nums}  {status}")
    return "\n".join(lines)
