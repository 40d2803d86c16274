"""Latency of one segmentation model through every CPU path mcq ships, measured side by side in one run.

For each model: PyTorch eager before and after reparameterization, onnxruntime fp32 and int8, ExecuTorch
XNNPACK fp32 and int8, all exported by mcq's own export code at the same input size. Each variant runs in a
block of calls after its own warm-up, the blocks in the order A B C ... C B A, so that drift in the
machine's speed touches all of them alike (calls are not interleaved one by one: a runtime's worker threads
keep spinning for a while after a call and would slow the next runtime down); each figure is the median of
both blocks, with the thread count fixed for every runtime (each of ``--threads`` in turn, on the same exports).
With ``--checkpoint`` the model is a trained run (pixel agreement with PyTorch is then meaningful and printed), and
each runtime also gets its int8 as ``mcq export`` makes it ("int8 auto": calibrators in turn, then modules kept
float, checked on 8 validation images; ``mcq.export.quantization``) beside full int8 with the default calibrator;
with ``--models`` it is a freshly initialised one with 150 classes (ADE20K's), for speed only. A quantization-aware
checkpoint (``mcq train seg --qat``) also gets its own int8 ("int8 qat", the ranges it learnt); ``--skip-auto``
leaves out "int8 auto", whose search takes minutes.

    .venv/bin/python benchmarks/export_latency.py --models mci0,mci2 --img-size 512 --threads 1,2
    .venv/bin/python benchmarks/export_latency.py --models mci2 --precision fp32 --compare-rewrites  # the delegate's rewrites
    .venv/bin/python benchmarks/export_latency.py --checkpoint runs/demo/train/checkpoints/last.ckpt --img-size 512
    .venv/bin/python benchmarks/export_latency.py --checkpoint runs/seg-mci0-qat/checkpoints/last.ckpt --skip-auto
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mcq.errors import McqError
from mcq.export import executorch as et_format
from mcq.export import onnx as onnx_format
from mcq.export.parity import parity
from mcq.models.inference import inference_form
from mcq.models.segmentor import SegModel, create_seg_model
from mcq.runtime.artifacts import torch_runner
from mcq.runtime.backends import backend, format_for
from mcq.tasks.processing import dataset_images

FORMATS = (("onnxruntime", onnx_format, ".onnx"), ("executorch xnnpack", et_format, ".pte"))


def variants(fused: SegModel, size: int, calib: torch.Tensor, tmp: Path, precisions: tuple[str, ...] = ("fp32", "int8"),
             compare_rewrites: bool = False, checked_on: torch.Tensor | None = None,
             qat: dict | None = None) -> dict[str, Path | None]:
    """name -> artifact for every path in ``precisions`` of ``fused`` (a model in its inference form), exported into
    ``tmp`` (None: PyTorch eager; with ``compare_rewrites``, also the ExecuTorch fp32 program lowered without mcq's
    rewrites for the delegate; with ``checked_on``, validation images, also the int8 that ``mcq export`` keeps: "int8
    auto"; with ``qat``, a quantization-aware checkpoint's state, its int8: "int8 qat")."""
    example = calib[:1]
    paths: dict[str, Path | None] = {"torch eager": None, "torch eager, reparameterized": None}
    for fmt, module, suffix in FORMATS:
        for precision in precisions:
            path = tmp / f"{fused.cfg.encoder}_{size}_{precision}{suffix}"
            start = time.perf_counter()
            module.export(fused, example, path, precision, calib, {})
            print(f"  exported {path.name} in {time.perf_counter() - start:.0f} s", flush=True)
            paths[f"{fmt} {precision}"] = path
        if qat is not None:
            path = tmp / f"{fused.cfg.encoder}_{size}_int8_qat{suffix}"
            module.export(fused, example, path, "int8", None, {}, qat=qat)
            paths[f"{fmt} int8 qat"] = path
        if checked_on is not None and "int8" in precisions:
            path = tmp / f"{fused.cfg.encoder}_{size}_int8_auto{suffix}"
            check = lambda run: parity(run, fused, checked_on, "int8", "seg")  # noqa: E731
            try:
                facts = module.export(fused, example, path, "int8", calib, {}, check=check)["int8"]
            except McqError as e:
                print(f"  {fmt} int8 auto: refused: {e}", flush=True)
                continue
            print(f"  {fmt} int8 auto: calibration {facts['calibration']}, kept float: "
                  f"{', '.join(facts['float_modules']) or 'nothing'}; tried: "
                  + ", ".join(f"{t['method']} {t['measure']}" for t in facts["calibrations_tried"])
                  + (f", then {len(facts['fallback_trials'])} fallback trials" if "fallback_trials" in facts else ""),
                  flush=True)
            paths[f"{fmt} int8 auto"] = path
    if compare_rewrites:  # the XNNPACK program as torch.export gives it, without mcq.models.delegation's rewrites
        path = tmp / f"{fused.cfg.encoder}_{size}_fp32_as_exported.pte"
        et_format.export(fused, example, path, "fp32", None, {}, rewrite=False)
        paths["executorch xnnpack fp32, as exported"] = path
    return paths


def runners(eager: dict[str, torch.nn.Module], paths: dict[str, Path | None], threads: int) -> dict:
    """name -> runner of every variant (``eager``: the PyTorch ones by name), each runtime on ``threads`` threads."""
    torch.set_num_threads(threads)
    return {name: torch_runner(eager[name]) if path is None else backend(format_for(str(path))).runner(path, threads)
            for name, path in paths.items()}


def measure(runs: dict, x: np.ndarray, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds per call of every runner: blocks of ``rounds`` calls in the order A B ... B A."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for name in [*runs, *reversed(runs)]:
        for i in range(warmup + rounds):
            start = time.perf_counter()
            runs[name](x)
            if i >= warmup:
                times[name].append(1000 * (time.perf_counter() - start))
    return times


def report(title: str, times: dict[str, list[float]], agreement: dict[str, float] | None) -> str:
    med = {k: statistics.median(v) for k, v in times.items()}
    eager = med["torch eager"]
    best_fp32 = min(v for k, v in med.items() if "int8" not in k)
    lines = [title, f"{'variant':<32} {'median ms':>10} {'p90 ms':>8} {'x eager':>8} {'x best fp32':>12} {'agree %':>8}"]
    for name, ms in med.items():
        p90 = float(np.percentile(times[name], 90))
        agree = f"{100 * agreement[name]:>8.3f}" if agreement and name in agreement else f"{'-':>8}"
        lines.append(f"{name:<32} {ms:>10.1f} {p90:>8.1f} {eager / ms:>8.2f} {best_fp32 / ms:>12.2f} {agree}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mci0,mci2", help="encoders, freshly initialised (ignored with --checkpoint)")
    ap.add_argument("--checkpoint", action="append", help="a trained run's .ckpt (repeatable)")
    ap.add_argument("--img-size", type=int, default=512)
    ap.add_argument("--threads", default="2", help="threads for every runtime; several, comma-separated, "
                    "are timed in turn on the same exports (default 2)")
    ap.add_argument("--rounds", type=int, default=8, help="calls per block (two blocks per variant)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--precision", default="fp32,int8", help="precisions of the exported paths (default fp32,int8)")
    ap.add_argument("--compare-rewrites", action="store_true", help="also time ExecuTorch fp32 lowered without "
                    "mcq's rewrites for the XNNPACK delegate (mcq.models.delegation)")
    ap.add_argument("--calib", type=int, default=16, help="calibration images for int8 (embedded data)")
    ap.add_argument("--data", help="dataset for calibration and agreement (default: the embedded data)")
    ap.add_argument("--json", help="also write the medians here")
    ap.add_argument("--skip-auto", action="store_true", help="with --checkpoint: no 'int8 auto' (a search of minutes)")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    if args.checkpoint:
        from mcq.tasks.checkpoint import read_checkpoint

        models = [(Path(c).name, task.model, getattr(task, "qat", None))
                  for c, task in ((c, read_checkpoint(c, "seg")) for c in args.checkpoint)]
    else:
        torch.manual_seed(0)
        models = [(name, create_seg_model(name, 150), None) for name in args.models.split(",")]
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads for every runtime, "
          f"{args.img_size}x{args.img_size}, median of 2 blocks of {args.rounds} calls (A B .. B A), {args.warmup} warm-up "
          f"calls before each; "
          f"torch {torch.__version__}, onnxruntime {onnx_format.ort.__version__}")
    results = {}
    for label, model, qat in models:
        calib = dataset_images(args.data, "training", args.img_size, model.cfg.encoder, args.calib)
        images = (dataset_images(args.data, "validation", args.img_size, model.cfg.encoder, 8) if args.checkpoint
                  else None)
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{model.cfg.encoder} ({label}):", flush=True)
            fused = inference_form(model)
            paths = variants(fused, args.img_size, calib, Path(tmp), tuple(args.precision.split(",")),
                             args.compare_rewrites, None if args.skip_auto else images, qat)
            agreement = None
            x = calib[:1].numpy()
            eager = {"torch eager": model.eval(), "torch eager, reparameterized": fused}
            for t in threads:
                runs = runners(eager, paths, t)
                if args.checkpoint and agreement is None:  # the same artifacts at every thread count
                    agreement = {k: parity(r, fused, images, "int8" if "int8" in k else "fp32", "seg")["agreement"]
                                 for k, r in runs.items()}
                times = measure(runs, x, args.rounds, args.warmup)
                print(report(f"{model.cfg.encoder} SemanticFPN at {args.img_size} px, {t} threads", times, agreement))
                results.setdefault(label, {})[t] = {k: statistics.median(v) for k, v in times.items()}
                del runs
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": threads, "img_size": args.img_size,
                                               "median_ms": results}, indent=2))  # model -> threads -> variant


if __name__ == "__main__":
    main()
