"""The measurements of one model: latency, cold start, peak memory, size, parameters, FLOPs, pre/post-processing.

Latency is wall-clock time of one call with a batch of one, after ``warmup`` calls, with the thread count
fixed by the caller. Peak memory is the rise of the process's resident set (RSS) from just before the model is
loaded to its highest point while it loads and runs: on Linux the high-water mark ``VmHWM`` is reset first
(``/proc/self/clear_refs``), elsewhere ``ru_maxrss`` is used, which can only show a rise above the process's
earlier peak. Before it, glibc's ``malloc_trim`` hands the heap's free pages back to the system: without it a
runtime that allocates through malloc (onnxruntime) reuses the pages the export left and shows a rise of ~0 MB.
Memory an allocator still keeps from models measured before is not counted, so it is a lower bound.
"""

from __future__ import annotations

import ctypes
import gc
import resource
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

MEMORY_METHOD = ("peak RSS rise over the model's load and runs (Linux VmHWM reset via /proc/self/clear_refs, "
                 "free heap pages returned by malloc_trim first; memory still held from earlier models is not "
                 "counted)")


def time_calls(run: Callable[[], object], runs: int, warmup: int = 1) -> list[float]:
    """Milliseconds of each of ``runs`` calls of ``run`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(1000 * (time.perf_counter() - start))
    return times


def summarize(times: list[float]) -> dict:
    """Median, 90th percentile, min and every sample (ms)."""
    return {"median_ms": statistics.median(times), "p90_ms": float(np.percentile(times, 90)), "min_ms": min(times),
            "runs_ms": [round(t, 3) for t in times]}


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _trim_heap() -> None:
    """Collect garbage and return glibc's free heap pages to the system (nothing elsewhere)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _maxrss_kb() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


@contextmanager
def peak_rss() -> Iterator[dict]:
    """Yields a dict that gets ``peak_mb``: the rise of the resident set inside the block (see the module's note)."""
    out: dict = {}
    _trim_heap()
    rss = _status_kb("VmRSS")
    linux = rss is not None and _reset_peak()
    before = rss if linux else _maxrss_kb()
    yield out
    peak = (_status_kb("VmHWM") if linux else None) or _maxrss_kb()
    out["peak_mb"] = max(0, peak - before) / 1024


def path_size_mb(path: str | Path) -> float:
    """Size on disk of a file or of a folder (an ``.mlpackage``), in MB (10^6 bytes)."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def state_size_mb(model: torch.nn.Module) -> float:
    """Bytes of the model's parameters and buffers, in MB: the size of its PyTorch weights."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6


def params_m(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def gflops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """fvcore's count for one image, in G (fvcore counts a fused multiply-add as one FLOP, as papers do)."""
    from fvcore.nn import FlopCountAnalysis

    with torch.no_grad():
        analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return analysis.total() / 1e9
