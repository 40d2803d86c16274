"""``ProfileConfig``: what ``mcq profile`` measures and how, as plain data, with its check."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mcq.errors import McqError
from mcq.export.labels import check_outputs

RUNTIMES = {"torch": None, "onnxruntime": "onnx", "executorch": "executorch", "coreml": "coreml", "web": "onnx"}
DEFAULT_RUNTIMES = ("torch", "onnxruntime", "executorch", "coreml")  # web on demand: it starts a browser per cell
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_MODELS = ("mci0", "mci1", "mci2", "vit_b16", "swin_l", "vit_adapter_b")


class CellStatus(StrEnum):
    """A profile cell's outcome; the value is what tables and ``profile.json`` say."""

    RAN = "ran"
    FAILED = "failed"  # the export, its check or the runtime; ``why`` says which
    CANNOT_RUN = "cannot run here"  # e.g. Core ML prediction off macOS
    NOT_SUPPORTED = "not supported"  # e.g. eager PyTorch in int8


@dataclass
class ProfileConfig:
    """What ``mcq profile`` measures and how; ``models`` are encoders (random init), ``checkpoints`` trained runs."""

    models: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    runtimes: list[str] = field(default_factory=lambda: list(DEFAULT_RUNTIMES))
    precisions: list[str] = field(default_factory=lambda: ["fp32", "int8"])
    compute_units: list[str] = field(default_factory=lambda: ["cpu_only", "cpu_and_gpu", "all"])  # Core ML, on macOS
    img_sizes: list[int] = field(default_factory=list)  # empty: the paper's size for encoders, the training size else
    threads: int = 1
    runs: int = 20
    warmup: int = 3
    accuracy: list[str] = field(default_factory=list)  # `mcq eval TASK --json` files
    baselines: str | None = None  # published accuracies (default mcq/profile/baselines.json)
    data: str | None = None  # images for pre-processing, parity and int8 calibration (default: embedded)
    out: str | None = None  # default profiles/<device>
    parity_images: int = 8
    calib_images: int = 16
    seed: int = 0
    per_op: bool = False  # each cell that ran: its ops' time from the runtime's profiler (``mcq.profile.per_op``)
    outputs: str = "logits"  # seg: "labels" puts the argmax in the model (``mcq.export.labels``)

    def check(self) -> None:
        from mcq.runtime.coreml import COMPUTE_UNITS
        from mcq.models.encoders import encoder_info

        for name, given, known in (("runtime", self.runtimes, RUNTIMES), ("precision", self.precisions, PRECISIONS),
                                   ("Core ML compute units", self.compute_units, COMPUTE_UNITS)):
            bad = [g for g in given if g not in known]
            if bad or not given:
                raise McqError(f"unknown {name} {', '.join(bad) or '(none given)'}; known: {', '.join(known)}")
        for name in self.models:
            encoder_info(name)
        check_outputs("seg", self.outputs)  # a known value; each checkpoint's task is checked in ``_subjects``
        if not self.models and not self.checkpoints:
            raise McqError("nothing to profile: give --models and/or --checkpoint")
        if self.runs < 1 or self.threads < 1:
            raise McqError("--runs and --threads must be at least 1")
