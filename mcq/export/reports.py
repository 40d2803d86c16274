"""What ``export_checkpoint`` returns per artifact: an ``ArtifactReport``, whose ``status`` is a ``Status``; the
reports as text (``format_report``)."""

from __future__ import annotations

from enum import StrEnum
from typing import TypedDict

from mcq.export.accuracy import format_accuracy
from mcq.export.explain import format_drift
from mcq.export.parity import format_parity_table
from mcq.export.quantization import format_int8
from mcq.models.delegation import format_delegation


class Status(StrEnum):
    """An artifact's outcome; the value is what reports and JSON files say."""

    OK = "ok"  # kept: its check ran here and passed
    NOT_RUN = "ok (numerics not run here)"  # kept: its runtime is not on this machine; what can be checked passed
    FAILED = "failed"  # not kept (unless the export keeps a failed parity check: then ``kept``)


class ArtifactReport(TypedDict, total=False):
    """One artifact: where it is, what it is, its ``status`` and the facts behind it. ``why`` says why it failed;
    ``traceback`` is there when the failure was not one of mcq's own one-line errors (``mcq --debug`` prints it)."""

    artifact: str
    path: str
    format: str
    precision: str
    img_size: int
    target: str
    graph: str  # det: the graph the artifact holds
    status: Status
    why: str
    kept: bool
    traceback: str
    parity: dict  # the check against PyTorch (``mcq.export.parity``), or what could be checked here
    accuracy: dict  # seg: mIoU of the artifact against its checkpoint's (``mcq.export.accuracy``)
    int8: dict  # how int8 was reached (``mcq.export.quantization``)
    delegation: dict  # ExecuTorch: what the XNNPACK delegate took
    explain: dict  # ``--explain``: error maps and layer drift


def format_report(reports: list[ArtifactReport]) -> str:
    """The parity table, then what each artifact's report holds beyond it: numerics not run here, the delegate's
    share, how int8 was reached, the mIoU drop and ``--explain``'s findings (``mcq export``)."""
    lines = [format_parity_table(reports)]
    for r in reports:
        if r["status"] == Status.NOT_RUN:
            lines.append(f"{r['artifact']}: {r['parity']['numerics']}")
        if "delegation" in r:
            lines.append(format_delegation(r["artifact"], r["delegation"]))
        if "int8" in r:
            lines.append(format_int8(r["artifact"], r["int8"]))
        if "accuracy" in r:
            lines.append(format_accuracy(r["artifact"], r["accuracy"]))
        ex = r.get("explain", {})
        if "drift" in ex:
            lines.append(format_drift(r["artifact"], ex["drift"]))
        lines += [f"{r['artifact']}: explain {key.replace('_', ' ')}: {ex[key]}"
                  for key in ("drift_skipped", "skipped", "error") if key in ex]
        if "dir" in ex:
            lines.append(f"  error maps: {ex['dir']}/image_*.png")
    return "\n".join(lines)


def failed_artifacts(reports: list[ArtifactReport]) -> list[str]:
    """The artifacts that failed their check (and were not kept)."""
    return [r["artifact"] for r in reports if r["status"] == Status.FAILED]
