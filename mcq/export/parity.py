"""The parity check: an exported artifact against the PyTorch model on the same dataset images."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

# pixel agreement (share of pixels whose argmax class matches PyTorch) and max |error| / max |logit|
THRESHOLDS = {"fp32": {"agreement": 0.999, "max_rel": 1e-3}, "fp16": {"agreement": 0.99}, "int8": {"agreement": 0.99}}


def parity(run: Callable[[np.ndarray], np.ndarray], model: torch.nn.Module, images: torch.Tensor, precision: str) -> dict:
    """Run ``run`` (one NCHW float32 image at a time) and ``model`` on ``images``; compare; judge by ``precision``."""
    max_abs, max_ref, agree, total = 0.0, 0.0, 0, 0
    for x in images:
        with torch.no_grad():
            ref = model(x[None]).numpy()
        out = np.asarray(run(x[None].numpy()), dtype=np.float32).reshape(ref.shape)
        max_abs = max(max_abs, float(np.abs(out - ref).max()))
        max_ref = max(max_ref, float(np.abs(ref).max()))
        agree += int((out.argmax(1) == ref.argmax(1)).sum())
        total += ref.shape[0] * ref.shape[2] * ref.shape[3]
    result = {"images": len(images), "max_abs": max_abs, "max_rel": max_abs / max(max_ref, 1e-12),
              "agreement": agree / total, "precision": precision, "thresholds": THRESHOLDS[precision],
              "numerics": "compared"}
    return judge(result)


def judge(result: dict) -> dict:
    """Add ``passed`` and, when it fails, ``why``."""
    t = result["thresholds"]
    why = []
    if result["agreement"] < t["agreement"]:
        why.append(f"pixel agreement {100 * result['agreement']:.2f}% < {100 * t['agreement']:.1f}%")
    if "max_rel" in t and result["max_rel"] > t["max_rel"]:
        why.append(f"max abs error {result['max_rel']:.2e} of the largest logit > {t['max_rel']:.0e}")
    result["passed"] = not why
    if why:
        result["why"] = "; ".join(why)
    return result


def format_parity_table(reports: list[dict]) -> str:
    """One row per artifact: format, precision, max abs / rel error, agreement, status."""
    lines = [f"{'artifact':<34} {'max abs':>9} {'max rel':>9} {'agree %':>8}  status"]
    for r in reports:
        p = r.get("parity", {})
        if p.get("numerics") == "compared":
            nums = f"{p['max_abs']:>9.2e} {p['max_rel']:>9.2e} {100 * p['agreement']:>8.3f}"
        else:
            nums = f"{'-':>9} {'-':>9} {'-':>8}"
        status = r["status"] + (f" ({r['why']})" if r.get("why") else "")
        lines.append(f"{r['artifact']:<34} {nums}  {status}")
    return "\n".join(lines)
