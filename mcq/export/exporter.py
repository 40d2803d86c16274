"""``export_seg``: checkpoint -> inference form -> artifact per format and precision -> parity check -> metadata."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import torch
from timm.utils import reparameterize_model

from mcq.data import ADE20K, SegTransform, default_seg_data
from mcq.engine.checkpoint import load_seg_task
from mcq.errors import McqError
from mcq.export.explain import explain_artifact
from mcq.export.formats import SUFFIXES, format_module
from mcq.export.metadata import seg_metadata
from mcq.export.parity import parity
from mcq.io import write_json
from mcq.models.segmentor import SegModel


def inference_form(model: SegModel) -> SegModel:
    """Eval mode with every MobileOne/RepMixer/RepCPE block fused (the whole task model, not the bare encoder)."""
    return reparameterize_model(copy.deepcopy(model).eval())


def dataset_images(data: str | Path | None, split: str, size: int, mean, std, n: int) -> torch.Tensor:
    """The first ``n`` images of ``split``, preprocessed as the artifact expects them."""
    ds = ADE20K(data or default_seg_data(), split, SegTransform(size, False, mean, std))
    return torch.stack([ds[i][0] for i in range(min(n, len(ds)))])


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def export_seg(
    checkpoint: str | Path, formats: list[str], precisions: list[str | None], out: str | Path = "exports",
    img_size: int | None = None, data: str | Path | None = None, n_images: int = 8, n_calib: int = 16,
    explain: bool = False, options: dict[str, dict] | None = None,
) -> list[dict]:
    """Export ``checkpoint`` to every format x precision; each artifact is checked before it is kept.

    Returns one report per artifact: ``status`` is ``ok``, ``ok (numerics not run here)`` or ``failed``
    (with ``why``). A failed artifact is not left on disk; a kept one has a ``<artifact>.json`` sidecar.
    With ``explain``, every artifact that can run here, failed or not, also gets ``<artifact>.explain/``
    (``mcq.export.explain``) and an ``explain`` entry in its report. ``options`` holds extra keyword
    arguments of a format's ``export`` (e.g. ``{"executorch": {"backend": "coreml"}}``); they are recorded in
    the metadata and named in the artifact's file name.
    """
    task = load_seg_task(checkpoint)
    model = inference_form(task.model)
    size = img_size or task.hparams.optim["img_size"]
    model.check_input_size(size, size)
    enc = model.encoder
    images = dataset_images(data, "validation", size, enc.mean, enc.std, n_images)
    calib = None
    meta = seg_metadata(model, task.class_names, size, checkpoint, task.hparams.optim)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for fmt in formats:
        module = format_module(fmt)
        for precision in precisions:
            precision = precision or module.DEFAULT_PRECISION
            if precision == "int8" and calib is None:
                calib = dataset_images(data, "training", size, enc.mean, enc.std, n_calib)
            opts = (options or {}).get(fmt, {})
            reports.append(_export_one(module, fmt, model, images, calib, precision, {**meta, **opts}, out, explain, opts))
    return reports


def _explain(fmt: str, run, model: SegModel, images, calib, precision: str, meta: dict, out: Path) -> dict:
    """``explain_artifact``, or why it did not run; its own failure does not fail the artifact."""
    if run is None:
        return {"skipped": "the artifact cannot run on this machine"}
    try:
        return explain_artifact(fmt, run, model, images, calib, precision, meta, out)
    except Exception as e:  # noqa: BLE001 - a diagnosis that fails is reported, the artifact stands on its check
        return {"error": (str(e).strip().splitlines() or [type(e).__name__])[0][:300]}


def _export_one(module, fmt: str, model: SegModel, images, calib, precision: str, meta: dict, out: Path,
                explain: bool, opts: dict) -> dict:
    tags = "".join(f"-{v}" for v in opts.values())
    name = f"{meta['encoder']}_{meta['head']}_{meta['input']['shape'][-1]}_{precision}{tags}{SUFFIXES[fmt]}"
    final, staged = out / name, out / f".partial-{name}"
    report = {"artifact": name, "path": str(final), "format": fmt, "precision": precision,
              "img_size": meta["input"]["shape"][-1]}
    meta = {**meta, "format": fmt, "precision": precision}
    try:
        _remove(staged)
        module.export(model, images[:1], staged, precision, calib, meta, **opts)
        run = module.runner(staged)
        report["parity"] = parity(run, model, images, precision) if run else module.inspect(staged, meta)
        if explain:
            report["explain"] = _explain(fmt, run, model, images, calib, precision, meta, out / f"{name}.explain")
        if not report["parity"]["passed"]:
            raise McqError(report["parity"]["why"])
        _remove(final)
        os.replace(staged, final)
        write_json(f"{final}.json", {**meta, "parity": report["parity"]})
        report["status"] = "ok" if run else "ok (numerics not run here)"
    except Exception as e:  # noqa: BLE001 - a failed artifact is reported, not fatal to the others
        report["status"], report["why"] = "failed", (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        for stale in (final, Path(f"{final}.json")):  # an older artifact of the same name no longer stands
            _remove(stale)
    finally:
        _remove(staged)
    return report
