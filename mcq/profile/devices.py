"""Profiles measured on phones: parsers of what the on-device harnesses print (``deploy/android``, ``deploy/ios``)
into the cells of a ``profile.json``, so that ``mcq profile compare`` takes a phone as it takes this machine.

* ExecuTorch's Android benchmark app (minibench) writes ``benchmark_results.json``: a list of
  ``{benchmarkModel: {name, backend, quantization}, metric, actualValue, targetValue, deviceInfo}``.
* ExecuTorch's ``executor_runner`` prints ``Model loaded in X ms.`` (where the build prints it) and
  ``Model executed successfully N time(s) in X ms.``, a total over the N runs.
* An XCTest ``measure(metrics: [XCTClockMetric()])`` test prints ``measured [Clock Monotonic Time, s] average: A,
  ... values: [v1, v2, ...]``.

Only what the tool reports is recorded: minibench gives means, executor_runner a total (so a mean), XCTest every
run (so a median). A cell's ``latency_stat`` says which; ``median_ms`` holds that figure so that profiles compare.
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

from mcq.errors import McqError

# an mcq artifact name: <encoder>_<head>_<size>_<precision>[-<backend>].<suffix> (mcq.export.exporter.artifact_name)
_ARTIFACT = re.compile(r"(?P<encoder>[a-z0-9_]+?)_(?P<head>fpn|upernet)_(?P<size>\d+)_(?P<precision>fp32|fp16|int8)")
MINIBENCH_METRICS = {"avg_inference_latency(ms)": "mean_ms", "trimmean_inference_latency(ms)": "trimmean_ms",
                     "model_load_time(ms)": "load_ms", "ram_pss_usage(mb)": "peak_mem_mb",
                     "generate_time(ms)": None, "token_per_sec": None}


def artifact_fields(name: str, file: str | Path) -> dict:
    """``model``, ``encoder``, ``head``, ``img_size``, ``precision`` from an mcq artifact name."""
    m = _ARTIFACT.search(Path(name).name)
    if not m:
        raise McqError(f"{file}: model name {name!r} is not an mcq artifact name (<encoder>_<head>_<size>_<precision>)")
    return {"model": f"{m['encoder']}+{m['head']}", "encoder": m["encoder"], "head": m["head"],
            "img_size": int(m["size"]), "precision": m["precision"]}


def parse_minibench(path: str | Path) -> tuple[list[dict], dict]:
    """Cells and the device of a minibench ``benchmark_results.json``."""
    from mcq.profile.accuracy import read_json

    rows = read_json(path, "minibench benchmark_results.json")
    if not isinstance(rows, list) or not all(isinstance(r, dict)
                                             and {"benchmarkModel", "metric", "actualValue"} <= set(r)
                                             for r in rows):
        raise McqError(f"{path}: not a minibench benchmark_results.json (a list of {{benchmarkModel, metric, "
                       "actualValue, ...}})")
    cells: dict[tuple, dict] = {}
    device: dict = {}
    for r in rows:
        bm = r["benchmarkModel"]
        key = (bm.get("name", ""), bm.get("backend", ""), bm.get("quantization", ""))
        cell = cells.setdefault(key, {**artifact_fields(key[0], path), "runtime": "executorch", "status": "ran",
                                      "backend": key[1], "quantization": key[2]})
        field = MINIBENCH_METRICS.get(r["metric"], r["metric"])
        if field:
            cell[field] = float(r["actualValue"])
        device = device or dict(r.get("deviceInfo") or {})
    for cell in cells.values():
        stat = "trimmean_ms" if "trimmean_ms" in cell else "mean_ms"
        if stat not in cell:
            raise McqError(f"{path}: {cell['model']} has no inference latency metric")
        cell["median_ms"], cell["latency_stat"] = cell[stat], f"{stat[:-3]} (minibench)"
    return list(cells.values()), device


def parse_executor_runner(text: str, artifact: str, file: str | Path = "executor_runner output") -> dict:
    """One cell from ``executor_runner``'s log: the mean of its total over N runs, and the load time if printed."""
    run = re.search(r"Model executed successfully (\d+) time\(s\) in ([\d.]+) ms", text)
    if not run:
        raise McqError(f"{file}: no 'Model executed successfully N time(s) in X ms' line (did the runner fail?)")
    n, total = int(run[1]), float(run[2])
    cell = {**artifact_fields(artifact, file), "runtime": "executorch", "status": "ran", "runs": n, "total_ms": total,
            "mean_ms": total / n, "median_ms": total / n, "latency_stat": "mean (executor_runner total / runs)"}
    load = re.search(r"Model loaded in ([\d.]+) ms", text)
    if load:
        cell["load_ms"] = float(load[1])
    return cell


XCTEST_UNITS = {"CPU": "cpu_only", "CPU+GPU": "cpu_and_gpu", "All": "all"}  # the iOS test's names -> Core ML's


def parse_xctest(text: str, artifact: str, file: str | Path = "xcodebuild output",
                 compute_units: str | None = None) -> dict:
    """One cell from an XCTest clock-metric measurement: every run's time, its median and p90, and the Core ML
    ``compute_units`` the test ran with when given."""
    import numpy as np

    m = re.search(r"measured \[Clock Monotonic Time, s\] average: ([\d.]+).*?values: \[([^\]]*)\]", text, re.S)
    if not m:
        raise McqError(f"{file}: no 'measured [Clock Monotonic Time, s] ... values: [...]' line of an XCTest measure")
    runs = [1000 * float(v) for v in m[2].split(",") if v.strip()]
    if not runs:
        raise McqError(f"{file}: the XCTest measurement lists no values")
    return {**artifact_fields(artifact, file), "runtime": "coreml", **({"compute_units": compute_units} if compute_units
                                                                       else {}), "status": "ran", "runs_ms": runs,
            "median_ms": statistics.median(runs), "p90_ms": float(np.percentile(runs, 90)), "min_ms": min(runs),
            "mean_ms": 1000 * float(m[1]), "latency_stat": "median (XCTClockMetric)"}


def device_profile(cells: list[dict], device: dict, source: str) -> dict:
    """A ``profile.json`` of cells measured on a phone (``device``: what the harness says of it)."""
    from datetime import datetime, timezone

    return {"mcq_profile": 1, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "device": {"cpu": device.get("device") or device.get("model") or "unknown device", "arch":
                       device.get("arch", ""), "logical_cores": None, "usable_cores": None, "memory_gb": None,
                       "os": device.get("os", ""), "python": "", "threads": device.get("threads"),
                       "versions": {}, "reported": device},
            "settings": {"source": source, "batch": 1}, "cells": cells}


def main(argv: list[str] | None = None) -> int:
    """``python -m mcq.profile.devices {minibench,executor-runner,xctest} FILE [--artifact NAME] [--device TEXT]
    --out profile.json``: what the deploy/ scripts call."""
    import argparse

    from mcq.io import write_json

    ap = argparse.ArgumentParser(prog="python -m mcq.profile.devices", description=main.__doc__)
    ap.add_argument("kind", choices=["minibench", "executor-runner", "xctest"])
    ap.add_argument("file")
    ap.add_argument("--artifact", help="the artifact measured (executor-runner, xctest), e.g. mci0_fpn_512_int8.pte")
    ap.add_argument("--device", default="", help="the device, e.g. 'Pixel 8, Android 15' (executor-runner, xctest)")
    ap.add_argument("--compute-units", choices=list(XCTEST_UNITS),
                    help="xctest: the compute units MCQPerfTests ran on (MCQ_COMPUTE_UNITS)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        if args.kind == "minibench":
            cells, device = parse_minibench(args.file)
        else:
            if not args.artifact:
                raise McqError(f"--artifact is needed for {args.kind} output")
            text = Path(args.file).read_text()
            cell = (parse_executor_runner(text, args.artifact, args.file) if args.kind == "executor-runner" else
                    parse_xctest(text, args.artifact, args.file, XCTEST_UNITS.get(args.compute_units)))
            cells, device = [cell], {"device": args.device}
        write_json(args.out, device_profile(cells, device, f"{args.kind}: {args.file}"))
    except McqError as e:
        print(f"mcq: error: {e}", file=sys.stderr)
        return 2
    print(f"{len(cells)} cell(s) written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
