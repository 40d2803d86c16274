"""``profile``: every model x size x runtime x precision exported by mcq's own exporter, checked, and measured.

A model is a trained checkpoint of any task (seg, det, depth, cls), or an encoder name: then a randomly initialised
segmentation model with ADE20K's 150 classes and the encoder's default head, saved once as an mcq checkpoint
(``<out>/artifacts/<encoder>_random-init.ckpt``) so that it takes exactly the path of a trained one. Speed,
size and FLOPs do not depend on the weights; accuracy then comes from the published figures.

A det model is Mask R-CNN: ONNX holds the ``full`` graph, ExecuTorch and Core ML its ``features`` graph with the
rest done in Python (``mcq.tasks.detection``); each cell names its graph, and its post-processing time is that
Python part (``mcq.profile.inputs``). Det models export in fp32 only: their fp16 and int8 cells are "not supported".
With ``outputs="labels"`` every seg cell (eager PyTorch included) takes the argmax in the model
(``mcq.export.labels``), and its post-processing is the resize of the labels to the image.

The ``web`` runtime times the ONNX artifact in the web app in headless Chromium (``mcq.profile.web``), a cell per
backend (``web/wasm``, ``web/webgpu``) as Core ML has one per compute-unit setting.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from mcq.errors import McqError, failure, first_line
from mcq.export.labels import check_outputs, labels_model
from mcq.export.reports import Status
from mcq.io import write_json
from mcq.profile.config import RUNTIMES, CellStatus, ProfileConfig

# runtime -> the format it runs (None: the checkpoint in eager PyTorch); web: the ONNX artifact in the browser
SETTINGS = {"coreml": "compute_units", "web": "backend"}  # a runtime timed once per setting: the cell's key for it


@dataclass
class Subject:
    """One model to profile: its checkpoint (trained, or random init written by ``random_checkpoint``)."""

    checkpoint: Path
    task: str
    encoder: str
    head: str
    source: str  # "random init" or the checkpoint's path
    img_size: int  # the training size


def random_checkpoint(encoder: str, folder: Path, seed: int = 0) -> Path:
    """A segmentation model of ``encoder`` (ADE20K's classes, default head, random init, the paper's input size)
    saved as an mcq checkpoint in ``folder``; reused when already there."""
    from mcq.data import ade20k_class_names
    from mcq.models.encoders import encoder_info
    from mcq.recipes import load_recipe
    from mcq.tasks.checkpoint import write_checkpoint
    from mcq.tasks.specs import task_spec

    path = folder / f"{encoder}_random-init.ckpt"
    if path.is_file():
        return path
    info = encoder_info(encoder)
    names = ade20k_class_names()
    hparams = {"model": dict(encoder=encoder, num_classes=len(names), head=info.default_head), "class_names": names,
               "optim": {**asdict(load_recipe("seg", info.default_head)), "img_size": info.img_size}}
    torch.manual_seed(seed)
    return write_checkpoint(path, task_spec("seg").build_model(hparams["model"]), hparams)


def _subjects(cfg: ProfileConfig, artifacts: Path) -> list[Subject]:
    from mcq.tasks.checkpoint import load_state, task_of
    from mcq.tasks.specs import TASKS

    exported = [s.name for s in TASKS.values() if s.exported]
    subjects = []
    for name in cfg.models:
        ckpt = random_checkpoint(name, artifacts, cfg.seed)
        hp = load_state(ckpt)["hyper_parameters"]
        subjects.append(Subject(ckpt, "seg", name, hp["model"]["head"], "random init", hp["optim"]["img_size"]))
    for ckpt in map(Path, cfg.checkpoints):
        hp = load_state(ckpt).get("hyper_parameters") or {}
        task = task_of(hp) if isinstance(hp.get("optim"), dict) else None
        if task not in exported or "model" not in hp:
            raise McqError(f"{ckpt}: not an mcq {', '.join(exported)} checkpoint; `mcq profile` measures those")
        check_outputs(task, cfg.outputs, ckpt)
        subjects.append(Subject(ckpt, task, hp["model"]["encoder"], hp["model"].get("head", ""), str(ckpt),
                                hp["optim"]["img_size"]))
    return subjects


def profile(cfg: ProfileConfig) -> dict:
    """Measure every cell of ``cfg``; write ``profile.json``, ``report.md`` and the plot to the output folder;
    return the profile (``cells``: one dict per model x size x runtime x precision, with its ``status``)."""
    from mcq.profile.accuracy import attach_accuracy, load_baselines, load_eval
    from mcq.profile.device import describe_device, device_slug
    from mcq.profile.measure import MEMORY_METHOD
    from mcq.profile.report import write_outputs

    cfg.check()
    # fail before the long loop
    measured, published = [load_eval(p) for p in cfg.accuracy], load_baselines(cfg.baselines)
    torch.set_num_threads(cfg.threads)
    device = describe_device(cfg.threads)
    out = Path(cfg.out or Path("profiles") / device_slug(device))
    artifacts = out / "artifacts"
    made = [p for p in (out, artifacts) if not p.exists()]
    artifacts.mkdir(parents=True, exist_ok=True)
    try:
        subjects = _subjects(cfg, artifacts)
    except BaseException:  # nothing measured: no empty folders left behind
        for folder in reversed(made):
            if not any(folder.iterdir()):
                folder.rmdir()
        raise
    jobs = [(s, size, runtime, precision, setting) for s in subjects for size in (cfg.img_sizes or [s.img_size])
            for runtime in cfg.runtimes for precision in cfg.precisions for setting in _settings(runtime, cfg)]
    cells, bench, partial = [], None, out / "profile.partial.json"
    bar = tqdm(jobs, desc="profile", unit="cell")
    for subject, size, runtime, precision, setting in bar:
        bar.set_postfix_str(f"{subject.encoder} {size}px {runtime}{f'/{setting}' if setting else ''} {precision}")
        if bench is None or bench.key != (subject.checkpoint, size):
            bench = ModelBench(subject, size, cfg)
        cells.append({**bench.facts, **profile_cell(bench, runtime, precision, artifacts, cfg, setting)})
        write_json(partial, {"cells_planned": len(jobs), "cells": cells})  # what a stopped profile had measured
    attach_accuracy(cells, measured, published)
    result = {
        "mcq_profile": 1, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": device,
        "settings": {"threads": cfg.threads, "runs": cfg.runs, "warmup": cfg.warmup, "img_sizes": cfg.img_sizes,
                     "compute_units": cfg.compute_units if any(c.get("compute_units") for c in cells) else None,
                     "batch": 1, "memory": MEMORY_METHOD, "data": cfg.data or "embedded synthetic data",
                     "per_op": cfg.per_op, "outputs": cfg.outputs},
        "cells": cells,
    }
    result["outputs"] = write_outputs(result, out)
    partial.unlink()
    return result


def _settings(runtime: str, cfg: ProfileConfig) -> list[str | None]:
    """Core ML where it can predict: a cell per compute-unit setting; web: a cell per backend; otherwise one cell
    (None: no setting)."""
    from mcq.runtime.coreml import can_predict
    from mcq.profile.web import BACKENDS

    if runtime == "web":
        return list(BACKENDS)
    return list(cfg.compute_units) if runtime == "coreml" and can_predict() else [None]


def _or_none(count):
    """``count()``, or None where fvcore cannot trace the model (the profile goes on without its FLOPs)."""
    try:
        return count()
    except Exception:  # noqa: BLE001
        return None


class ModelBench:
    """What is measured once per model and size: parameters, FLOPs, pre-processing, the input image."""

    def __init__(self, subject: Subject, size: int, cfg: ProfileConfig):
        from mcq.tasks.checkpoint import read_checkpoint
        from mcq.tasks.specs import task_spec
        from mcq.models.inference import inference_form
        from mcq.profile.inputs import task_input
        from mcq.profile.measure import gflops, params_m, state_size_mb, summarize, time_calls

        self.key, self.subject, self.size = (subject.checkpoint, size), subject, size
        task = read_checkpoint(subject.checkpoint, subject.task)
        self.model = inference_form(task.model)
        self.input = task_input(subject.task, self.model, size, cfg.data)
        self.model.encoder.fix_input_size(*self.input.x.shape[-2:])
        self.x = self.input.x
        labels = cfg.outputs == "labels"
        self.torch_form = (labels_model(self.model, "torch", self.model.cfg.num_classes) if labels
                           else task_spec(subject.task).reference_graph(self.model))
        pre = time_calls(self.input.pre, cfg.runs, 1)
        self.weights_mb = state_size_mb(self.model)
        self.facts = {
            "model": f"{subject.encoder}+{subject.head or subject.task}", "task": subject.task,
            **({"outputs": "labels"} if labels else {}),
            "encoder": subject.encoder, "head": subject.head, "source": subject.source, "img_size": size,
            "params_m": params_m(task.model),
            "gflops": _or_none(lambda: gflops(self.torch_form, torch.from_numpy(self.x))),
            "pre_ms": summarize(pre)["median_ms"], "pre_post_image": self.input.image,
        }


def _artifact(bench: ModelBench, fmt: str, precision: str, folder: Path, cfg: ProfileConfig) -> dict:
    """Export (or reuse, when its sidecar names the same checkpoint and passed) one artifact; the exporter's
    report with ``export_s`` or ``reused``. On random weights an artifact that fails its parity check is kept
    (and reused) all the same, reported ``failed`` with ``kept``: its latency is real, its numerics are not judged."""
    from mcq.export.exporter import artifact_name, export_checkpoint
    from mcq.tasks.metadata import sha256

    s = bench.subject
    name = artifact_name({"encoder": s.encoder, "head": s.head, "task": s.task, "output": {"name": cfg.outputs},
                          "input": {"shape": [1, 3, bench.size, bench.size]}}, fmt, precision)
    path, sidecar = folder / name, folder / f"{name}.json"
    random = s.source == "random init"
    if path.exists() and sidecar.is_file():
        meta = json.loads(sidecar.read_text())
        parity = meta["parity"]
        if meta.get("source_checkpoint", {}).get("sha256") == sha256(s.checkpoint) and (parity["passed"] or random):
            compared = parity.get("numerics") == "compared"
            report = {"artifact": name, "path": str(path), "parity": parity, "reused": True, "graph": meta.get("graph"),
                      "status": Status.OK if compared else Status.NOT_RUN}
            if parity["passed"]:
                return report
            return {**report, "status": Status.FAILED, "why": parity["why"], "kept": True}
    start = time.perf_counter()
    [report] = export_checkpoint(s.checkpoint, [fmt], [precision], folder, bench.size, cfg.data,
                                 n_images=cfg.parity_images, n_calib=cfg.calib_images, keep_failed_parity=random,
                                 outputs=cfg.outputs, eval_images=0)  # accuracy: --accuracy's evals
    return {**report, "export_s": time.perf_counter() - start}


def _open_all(bench: ModelBench, fmt: str | None, path: Path, threads: int,
              compute_units: str | None = None) -> Callable[[np.ndarray], list]:
    """Every output of one run of the model (the checkpoint in eager PyTorch when ``fmt`` is None)."""
    from mcq.runtime.artifacts import torch_run_all
    from mcq.runtime.backends import backend

    if fmt is None:
        return torch_run_all(bench.torch_form)

    run_all = backend(fmt).run_all(path, threads, **({"compute_units": compute_units} if compute_units else {}))
    if run_all is None:
        raise McqError(f"{path.name}: cannot run on this machine")
    return run_all


def _prime(fmt: str | None) -> None:
    """Import the runtime before the load is timed: a one-time Python import is not the model's cold start."""
    if fmt is None:
        return
    from mcq.runtime.backends import backend

    backend(fmt)
    if fmt == "executorch":
        from executorch.runtime import Runtime

        Runtime.get()


def profile_cell(bench: ModelBench, runtime: str, precision: str, folder: Path, cfg: ProfileConfig,
                 setting: str | None = None) -> dict:
    """One cell: ``runtime``, ``precision`` (and its ``setting``: Core ML's ``compute_units``, web's ``backend``),
    ``status`` (a ``CellStatus``), ``why`` unless it ran, and the figures."""
    from mcq.profile.measure import path_size_mb
    from mcq.profile.web import measure_in_browser, web_unavailable
    from mcq.tasks.specs import task_spec

    cell: dict = {"runtime": runtime, "precision": precision, **({SETTINGS[runtime]: setting} if setting else {})}
    fmt = RUNTIMES[runtime]
    exported = task_spec(bench.subject.task).precisions
    if precision != "fp32" and fmt is None:
        why = f"eager PyTorch runs fp32 here; {precision} is measured through the exported formats"
        return {**cell, "status": CellStatus.NOT_SUPPORTED, "why": why}
    if exported and precision not in exported:
        why = f"{bench.subject.task} models export in {', '.join(exported)} only"
        return {**cell, "status": CellStatus.NOT_SUPPORTED, "why": why}
    unavailable = web_unavailable(bench.subject.task) if runtime == "web" else None
    if unavailable:
        return {**cell, "status": unavailable[0], "why": unavailable[1]}
    if fmt is None:
        path = bench.subject.checkpoint
        cell.update(artifact=path.name, size_mb=bench.weights_mb, parity="reference",
                    **({"graph": name} if (name := task_spec(bench.subject.task).reference_name) else {}))
    else:
        report = _artifact(bench, fmt, precision, folder, cfg)
        cell.update({k: report[k] for k in ("artifact", "export_s", "reused", "parity", "graph") if k in report})
        if report.get("kept"):
            cell["parity_failed"] = report["why"]
        elif report["status"] == Status.FAILED:
            return {**cell, "status": CellStatus.FAILED, **{k: report[k] for k in ("why", "traceback") if k in report}}
        path = Path(report["path"])
        cell["size_mb"] = path_size_mb(path)
        if report["status"] == Status.NOT_RUN:
            return {**cell, "status": CellStatus.CANNOT_RUN, "why": report["parity"].get("numerics", report["status"])}
    cell.update(measure_in_browser(path, bench.input.decoded, cfg, setting) if runtime == "web" else
                _measure_here(bench, fmt, path, cfg, cell))
    return ({**cell, **per_op_of_cell(bench, runtime, path, cfg)} if cfg.per_op and cell["status"] == CellStatus.RAN
            else cell)


def _measure_here(bench: ModelBench, fmt: str | None, path: Path, cfg: ProfileConfig, cell: dict) -> dict:
    """The figures of a cell whose runtime runs in this process: load, first run, latency, peak memory, post."""
    from mcq.profile.measure import peak_rss, summarize, time_calls

    try:
        _prime(fmt)
        with peak_rss() as mem:
            start = time.perf_counter()
            run = _open_all(bench, fmt, path, cfg.threads, cell.get("compute_units"))
            load_ms = 1000 * (time.perf_counter() - start)
            start = time.perf_counter()
            outputs = run(bench.x)
            first_ms = 1000 * (time.perf_counter() - start)
            times = time_calls(lambda: run(bench.x), cfg.runs, cfg.warmup)
        post = time_calls(lambda: bench.input.post(outputs, cell.get("graph") or ""), cfg.runs, 1)
    except Exception as e:  # noqa: BLE001 - a runtime that breaks is a failed cell, not a failed profile
        found = failure(e)
        return {"status": CellStatus.FAILED, **found, "why": f"{cell['runtime']}: {found['why']}"}
    return {"status": CellStatus.RAN, "load_ms": load_ms, "first_run_ms": first_ms, "peak_mem_mb": mem["peak_mb"],
            "post_ms": summarize(post)["median_ms"], **summarize(times)}


def per_op_of_cell(bench: ModelBench, runtime: str, path: Path, cfg: ProfileConfig) -> dict:
    """``per_op``: the cell's rows from its runtime's profiler, in runs of their own after the timed ones (the
    profiler's cost is not in the latency); or ``per_op_note`` where the runtime has none or it failed."""
    from mcq.profile import per_op

    try:
        if runtime == "torch":
            rows = per_op.ops_torch(bench.torch_form, bench.x, cfg.runs, cfg.warmup)
        elif runtime == "onnxruntime":
            rows = per_op.ops_onnxruntime(path, bench.x, cfg.runs, cfg.threads, cfg.warmup)
        elif runtime == "executorch":
            rows = per_op.ops_executorch(path, bench.x, cfg.runs, cfg.warmup, cfg.threads)
        else:
            return {"per_op_note": f"{runtime} has no per-op profiler here"}
    except Exception as e:  # noqa: BLE001 - the cell's figures stand without its per-op rows
        return {"per_op_note": f"per-op profile failed: {first_line(e)}"}
    return {"per_op": rows}
