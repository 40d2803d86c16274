"""The parity check of an export: an artifact against the PyTorch model on the same dataset images, by its task's
measure (``mcq.tasks.parity``), and the table ``mcq export`` prints."""

from __future__ import annotations

import torch

from mcq.export.labels import Labels
from mcq.tasks.parity import Run, labels_parity
from mcq.tasks.specs import task_spec

# what a det artifact holds (``mcq.tasks.detection``), said in the status column
GRAPH_NOTE = {"full": "full model", "features": "encoder+FPN+RPN head; rest in Python: mcq.tasks.detection.detect"}


def parity(run: Run, model: torch.nn.Module, images: torch.Tensor, precision: str, task: str) -> dict:
    """Run ``run`` (one NCHW float32 image at a time) and ``model`` on ``images``; compare by ``task``'s measure;
    judge by its thresholds for ``precision``. A ``Labels`` model gives class indices (``labels_parity``)."""
    spec = task_spec(task)
    if isinstance(model, Labels):
        return labels_parity(run, model, images, precision, spec.parity_thresholds)
    return spec.parity(run, model, images, precision)


def format_parity_table(reports: list[dict]) -> str:
    """One row per artifact: max abs / rel error, agreement (seg, cls) or mean relative error (depth), status."""
    lines = [f"{'artifact':<34} {'max abs':>9} {'max rel':>9} {'agree %':>9}  status"]
    for r in reports:
        p = r.get("parity", {})
        if p.get("numerics") == "compared":
            agree = (f"{100 * p['agreement']:>9.3f}" if "agreement" in p
                     else f"{'rel ' + format(p['mean_rel'], '.0e'):>9}")
            errors = f"{p['max_abs']:>9.2e} {p['max_rel']:>9.2e}" if "max_abs" in p else f"{'-':>9} {'-':>9}"
            nums = f"{errors} {agree}"
        else:
            nums = f"{'-':>9} {'-':>9} {'-':>9}"
        status = r["status"] + (f" ({r['why']})" if r.get("why") else "")
        status += f" [{GRAPH_NOTE[r['graph']]}]" if r.get("graph") else ""
        lines.append(f"{r['artifact']:<34} {nums}  {status}")
    return "\n".join(lines)
