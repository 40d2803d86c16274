"""``export_checkpoint``: checkpoint -> inference form -> artifact per format and precision -> parity check -> metadata.

Every task takes the same path (segmentation, depth, classification, detection); what differs is the metadata
(``mcq.tasks.metadata``) and the comparison the parity check makes (``mcq.export.parity``), and for detection the
graph each format holds (``mcq.tasks.detection``: the full Mask R-CNN, or its features with the rest in Python).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from torch import nn

from mcq.errors import McqError, failure
from mcq.export.accuracy import AccuracyCheck
from mcq.export.explain import explain_artifact
from mcq.export.formats import format_module
from mcq.export.labels import check_outputs, labels_metadata, labels_model
from mcq.export.parity import parity
from mcq.export.quantization import QAT_CALIBRATION, Int8Refused
from mcq.export.reports import ArtifactReport, Status
from mcq.io import write_json
from mcq.models.inference import inference_form
from mcq.runtime.backends import SUFFIXES, backend
from mcq.tasks.checkpoint import read_checkpoint
from mcq.tasks.metadata import task_metadata
from mcq.tasks.processing import dataset_images
from mcq.tasks.schema import validate_metadata
from mcq.tasks.specs import TASKS, TaskSpec, task_spec


EVAL_IMAGES = 100  # validation images each seg artifact's mIoU is measured on by default (ADE20K has 2,000)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def export_checkpoint(
    checkpoint: str | Path, formats: list[str], precisions: list[str | None], out: str | Path = "exports",
    img_size: int | None = None, data: str | Path | None = None, n_images: int = 8, n_calib: int = 16,
    explain: bool = False, options: dict[str, dict] | None = None, keep_failed_parity: bool = False,
    target: str | None = None, compute_units: str | None = None, outputs: str = "logits", calibration: str = "auto",
    int8_fallback: str = "auto", eval_images: int | None = EVAL_IMAGES,
) -> list[ArtifactReport]:
    """Export the model of ``checkpoint`` (any task) to every format x precision; each artifact is checked before it
    is kept.

    Returns one report per artifact (``mcq.export.reports``): its ``status`` is a ``Status`` (``failed`` with
    ``why``). A failed artifact is not left on disk; a kept one has a ``<artifact>.json`` sidecar.
    The input size is ``img_size`` (default: the training size) square, or for depth NYUv2's 4:3 at that height.
    ``data`` (default: the task's embedded dataset) gives the parity images (validation split) and the int8
    calibration images (training split). With ``explain``, every artifact that can run here, failed or not,
    also gets ``<artifact>.explain/`` (``mcq.export.explain``) and an ``explain`` entry in its report.
    With ``keep_failed_parity`` (``mcq profile`` on random weights, whose latency is still worth measuring), an
    artifact that fails only its parity check is kept, its sidecar saying so, and its report has ``kept``.
    ``options`` holds extra keyword arguments of a format's ``export`` (e.g. ``{"executorch": {"backend":
    "coreml"}}``); they are recorded in the metadata and named in the artifact's file name.
    ``target`` (the deploy target's name, ``mcq.export.targets``) is recorded in every sidecar and report;
    ``compute_units`` in Core ML sidecars, and Core ML's check runs on them (on macOS).
    int8 (formats with ``CALIBRATIONS``): ``calibration`` is one of the format's calibrators, or ``auto``: each in
    order of cost until the artifact passes its check; then ``int8_fallback="auto"`` keeps the fewest modules float
    that make it pass (``mcq.export.quantization``). With ``keep_failed_parity`` there is no search: the format's
    default calibrator (onnx minmax, executorch histogram) or the one named, nothing kept float. A quantization-aware
    checkpoint (``mcq train --qat``) exports its fine-tuned weights; its int8 takes the ranges it learnt with
    ``calibration="qat"``, and with ``auto`` in the formats whose ``QAT_BY_DEFAULT`` says so (ExecuTorch).
    ``outputs="labels"`` (seg only): the artifact returns class indices, not logits (``mcq.export.labels``); its
    file name ends in ``-labels``.
    Seg artifacts that run here (every precision) also get ``accuracy`` (``mcq.export.accuracy``): their mIoU and
    the checkpoint's on the first ``eval_images`` validation images of ``data`` (None: all of them; 0: not measured).
    """
    task = read_checkpoint(checkpoint)
    qat = task.qat  # the trained state of a quantization-aware checkpoint
    check_outputs(task.task, outputs, checkpoint)
    if calibration == QAT_CALIBRATION and qat is None:
        raise McqError(f"{checkpoint}: --calibration qat needs a quantization-aware checkpoint (mcq train --qat)")
    spec = task_spec(task.task)
    size = img_size or task.recipe["img_size"]
    backbone = task.model.cfg.encoder
    images = dataset_images(data, spec.splits[1], size, backbone, n_images, spec.name)
    model = inference_form(task.model, tuple(images.shape[-2:]))
    calib = None
    meta = task_metadata(task, tuple(images.shape[-2:]), checkpoint) | ({"target": target} if target else {})
    accuracy = AccuracyCheck(model, meta, data, eval_images) if spec.artifact_accuracy and eval_images != 0 else None
    fine_tune = (f"; or fine-tune it for int8 at this size: mcq train {spec.name} --qat --init {checkpoint} "
                 f"--img-size {size}") if qat is None and spec.qat else ""  # named when int8 is refused
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for fmt in formats:
        module = format_module(fmt)
        for precision in precisions:
            precision = precision or (spec.precisions or (module.DEFAULT_PRECISION,))[0]
            if precision == "int8" and calib is None:
                calib = dataset_images(data, spec.splits[0], size, backbone, n_calib, spec.name)
            opts = (options or {}).get(fmt, {})
            units = {"compute_units": compute_units} if compute_units and fmt == "coreml" else {}
            quant = _quant_options(module, precision, calibration, int8_fallback, qat)
            form = labels_metadata(meta, fmt) if outputs == "labels" else meta
            reports.append(_export_one(spec, module, fmt, model, images, calib, precision, {**form, **opts, **units},
                                       out, explain, opts, keep_failed_parity, quant, accuracy, fine_tune))
    return reports


def _quant_options(module, precision: str, calibration: str, int8_fallback: str, qat: dict | None) -> dict:
    """The int8 options of ``module.export``, for the formats that calibrate (those with ``CALIBRATIONS``): the
    state of quantization-aware training (``qat``) for ``calibration="qat"``, or ``auto`` where the format takes it
    by default (``QAT_BY_DEFAULT``); else the calibration search's (on a QAT checkpoint: on its fine-tuned weights)."""
    if precision != "int8" or not hasattr(module, "CALIBRATIONS"):
        return {}
    if qat is not None and (calibration == QAT_CALIBRATION or calibration == "auto" and module.QAT_BY_DEFAULT):
        return {"qat": qat}
    return {"calibration": calibration, "int8_fallback": int8_fallback}


def _explain(spec: TaskSpec, fmt: str, run, model: nn.Module, images, calib, precision: str, meta: dict,
             out: Path) -> dict:
    """``explain_artifact``, or why it did not run; its own failure does not fail the artifact."""
    if run is None:
        return {"skipped": "the artifact cannot run on this machine"}
    if not spec.explained:
        return {"skipped": f"--explain is for {', '.join(n for n, s in TASKS.items() if s.explained)} models"}
    try:
        return explain_artifact(fmt, run, model, images, calib, precision, meta, out)
    except Exception as e:  # noqa: BLE001 - a diagnosis that fails is reported, the artifact stands on its check
        found = failure(e)
        return {"error": found.pop("why"), **found}


def artifact_name(meta: dict, fmt: str, precision: str, opts: dict | None = None) -> str:
    """The file name of the artifact of ``meta``'s model in ``fmt`` and ``precision`` (options, and labels outputs,
    named in it)."""
    labels = meta.get("output", {}).get("name") == "labels"
    tags = "".join(f"-{v}" for v in (opts or {}).values()) + "-labels" * labels
    size = meta["input"]["shape"][-2]  # the height: --img-size (depth artifacts are 4:3 wide)
    kind = task_spec(meta["task"]).artifact_kind(meta)
    return f"{meta['encoder']}_{kind}_{size}_{precision}{tags}{SUFFIXES[fmt]}"


def _export_one(spec: TaskSpec, module, fmt: str, model: nn.Module, images, calib, precision: str, meta: dict,
                out: Path, explain: bool, opts: dict, keep_failed_parity: bool = False, quant: dict | None = None,
                accuracy: AccuracyCheck | None = None, fine_tune: str = "") -> ArtifactReport:
    """Export, check and keep one artifact; its report. ``fine_tune`` ends the reason of a refused int8."""
    name = artifact_name(meta, fmt, precision, opts)
    size = meta["input"]["shape"][-2]
    final, staged = out / name, out / f".partial-{name}"
    report: ArtifactReport = {"artifact": name, "path": str(final), "format": fmt, "precision": precision,
                              "img_size": size} | ({"target": meta["target"]} if "target" in meta else {})
    meta = {**meta, "format": fmt, "precision": precision}
    net = reference = model
    try:
        _remove(staged)
        if spec.precisions and precision not in spec.precisions:
            raise McqError(f"{spec.name} models export in {', '.join(spec.precisions)} only so far ({precision} "
                           "requested)")
        net, reference, meta = spec.artifact_graph(fmt, model, meta)
        report.update({"graph": meta["graph"]} if "graph" in meta else {})
        if meta.get("output", {}).get("name") == "labels":
            net = reference = labels_model(model, fmt, len(meta["class_names"]))
        if quant and "qat" not in quant and not keep_failed_parity:  # each int8 candidate's check, on validation images
            quant = {**quant, "check": lambda run: parity(run, reference, images, precision, meta["task"])}
        facts = module.export(net, images[:1], staged, precision, calib, meta, **opts, **(quant or {})) or {}
        report.update(facts)
        meta = {**meta, **facts}
        units = {"compute_units": meta["compute_units"]} if "compute_units" in meta else {}
        runtime = backend(fmt)
        run = spec.artifact_run(runtime.run_all(staged, **units), model, meta)
        report["parity"] = (parity(run, reference, images, precision, meta["task"]) if run
                            else runtime.inspect(staged, meta))
        if explain:
            report["explain"] = _explain(spec, fmt, run, model, images, calib, precision, meta, out / f"{name}.explain")
        passed = report["parity"]["passed"]
        if not passed and not keep_failed_parity:
            raise McqError(report["parity"]["why"])
        if accuracy and run:
            report["accuracy"] = accuracy(run, name)
        sidecar = {**meta, "parity": report["parity"]} | {k: report[k] for k in ("accuracy",) if k in report}
        if passed:  # the contract apps rely on (metadata.schema.json), which refuses a failed check
            validate_metadata(sidecar, f"{final}.json")
        _remove(final)
        os.replace(staged, final)
        write_json(f"{final}.json", sidecar)
        report["status"] = (Status.OK if run else Status.NOT_RUN) if passed else Status.FAILED
        if not passed:
            report.update(why=report["parity"]["why"], kept=True)
    except Exception as e:  # noqa: BLE001 - a failed artifact is reported, not fatal to the others
        report.update(status=Status.FAILED, **failure(e))
        if isinstance(e, Int8Refused):  # the closest artifact's check and what was tried
            report.update(parity=e.parity, int8=e.facts, why=report["why"] + fine_tune, **e.extra)
        for stale in (final, Path(f"{final}.json")):  # an older artifact of the same name no longer stands
            _remove(stale)
    finally:
        _remove(staged)
    return report
