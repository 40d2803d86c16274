"""What ``export_checkpoint`` returns per artifact: an ``ArtifactReport``, whose ``status`` is a ``Status``."""

from __future__ import annotations

from enum import StrEnum
from typing import TypedDict


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
