"""Where a call's time goes, op by op, from each runtime's own profiler (``mcq profile --per-op``).

Every function runs the model ``warmup`` times untimed, then ``runs`` times under the runtime's profiler, and
returns rows ``{"op", "delegated", "ms", "share", "calls"}``: one per kind of op as the runtime names it, ``ms``
its time per call of the model (mean over the runs), ``share`` that over the mean time of the whole call in the
same trace, ``calls`` how many times the op ran per call of the model. Sorted by ``ms``; past ``top`` the rest
is summed into ``(other ops)`` rows (one for the delegated ops, one for the rest), and the time of the call no
op accounts for (the runtime's own work between ops: dispatch, the delegate's entry, input and output copies; in
eager PyTorch, Python) is the row ``(not in an op)``. Shares therefore sum to 1.

- ExecuTorch: the program loaded with ETDump (``enable_etdump=True``, no debug buffer, so that no tensor is
  copied), read by ``executorch.devtools.Inspector`` from the ETDump alone (no ETRecord needed). Ops are the
  XNNPACK delegate's own operators (``Convolution (NHWC, F32) IGEMM``; delegated) and the kernels run outside it
  (``native_call_upsample_nearest2d.vec_out``; not delegated); the instance counter XNNPACK appends (``#12``) is
  dropped to group them. The call's total is the runtime's ``Method::execute``.
- onnxruntime: ``SessionOptions.enable_profiling``; ops are the ``Node`` events' ``op_name``, ``delegated`` the
  execution provider unless it is the CPU's (the only one used here, so False), the total the ``model_run`` event.
- eager PyTorch: ``torch.profiler`` on the CPU, ops' self time (``aten::mkldnn_convolution`` etc., so that a
  call's time is not counted twice in the ops it calls); delegated does not apply (None); the total is the call.
"""

from __future__ import annotations

import json
import re
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

OTHER, OUTSIDE = "(other ops)", "(not in an op)"
COLUMNS = ("op", "delegated", "ms", "share", "calls")


def _rows(per_op: dict[tuple[str, bool | None], tuple[float, int]], total_ms: float, runs: int,
          top: int | None) -> list[dict]:
    """Rows from ``{(op, delegated): (ms over all runs, calls over all runs)}`` and the mean call ``total_ms``."""
    rows = [{"op": op, "delegated": delegated, "ms": ms / runs, "calls": round(calls / runs)}
            for (op, delegated), (ms, calls) in per_op.items()]
    rows.sort(key=lambda r: -r["ms"])
    outside = total_ms - sum(r["ms"] for r in rows)
    if outside > 0:
        rows.append({"op": OUTSIDE, "delegated": None, "ms": outside, "calls": 0})
    total = max(total_ms, sum(r["ms"] for r in rows))  # a profiler whose ops outlast its call (rounding): share <= 1
    for r in rows:
        r["share"] = r["ms"] / total if total > 0 else 0.0
    return cut([{k: r[k] for k in COLUMNS} for r in rows], top)


def cut(rows: list[dict], top: int | None) -> list[dict]:
    """The ``top`` ops of ``rows``, the rest summed into ``(other ops)`` rows (one per ``delegated`` value), then
    ``(not in an op)``."""
    ops, outside = [r for r in rows if r["op"] != OUTSIDE], [r for r in rows if r["op"] == OUTSIDE]
    if top is None or len(ops) <= top:
        return rows
    kept, rest = ops[:top], ops[top:]
    for delegated in dict.fromkeys(r["delegated"] for r in rest):
        some = [r for r in rest if r["delegated"] == delegated]
        kept.append({"op": OTHER, "delegated": delegated, **{k: sum(r[k] for r in some) for k in ("ms", "share",
                                                                                                   "calls")}})
    return kept + outside


def _op_kind(name: str) -> str:
    """An XNNPACK operator's kind: its name without the instance counter (``GELU (NC) #3`` -> ``GELU (NC)``)."""
    return re.sub(r" #\d+$", "", name)


def ops_executorch(path: str | Path, x: np.ndarray, runs: int, warmup: int = 1, threads: int | None = None,
                   top: int | None = None) -> list[dict]:
    """Per-op rows of the ``.pte`` at ``path`` on input ``x`` (see the module's note)."""
    from executorch.devtools import Inspector
    from executorch.runtime import Runtime

    from mcq.runtime.executorch import set_threads

    set_threads(threads)
    program = Runtime.get().load_program(str(path), enable_etdump=True, debug_buffer_size=0)
    method = program.load_method("forward")
    inputs = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))]
    for _ in range(warmup + runs):
        method.execute(inputs)
    with tempfile.TemporaryDirectory() as tmp:
        etdump = Path(tmp) / "run.etdp"
        program.write_etdump_result_to_file(str(etdump), str(Path(tmp) / "debug.bin"))
        with warnings.catch_warnings():  # "Output Buffer not found": no tensors were kept, on purpose
            warnings.simplefilter("ignore")
            inspector = Inspector(etdump_path=str(etdump))
    per_op: dict = defaultdict(lambda: (0.0, 0))
    total = 0.0
    for block in inspector.event_blocks:
        for event in block.events:
            if event.perf_data is None:
                continue
            times = event.perf_data.raw[warmup:] if len(event.perf_data.raw) == warmup + runs else event.perf_data.raw
            ms = sum(times) * runs / len(times) if times else 0.0  # over ``runs`` calls
            if event.name == "Method::execute":
                total += ms / runs
            elif event.is_delegated_op:
                op = (_op_kind(event.name), True)
                per_op[op] = (per_op[op][0] + ms, per_op[op][1] + runs)
            elif event.name.startswith("native_call_"):
                op = (event.name, False)
                per_op[op] = (per_op[op][0] + ms, per_op[op][1] + runs)
            # else: OPERATOR_CALL and DELEGATE_CALL wrap the ops above (and the runtime's work around them), and the
            # load's events (Method::init, Program::load_method) are not part of a call
    if not total:
        raise RuntimeError(f"{Path(path).name}: the ETDump has no Method::execute event (is this ExecuTorch runtime "
                           "built with the event tracer?)")
    return _rows(per_op, total, runs, top)


def ops_onnxruntime(path: str | Path, x: np.ndarray, runs: int, threads: int | None = None, warmup: int = 1,
                    top: int | None = None) -> list[dict]:
    """Per-op rows of the ONNX model at ``path`` on input ``x`` (see the module's note)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        if threads:
            opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)}
        for _ in range(warmup + runs):
            sess.run(None, feed)
        trace = json.loads(Path(sess.end_profiling()).read_text())
    calls = sorted((e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"),
                   key=lambda e: e["ts"])[-runs:]
    if len(calls) < runs:
        raise RuntimeError(f"{Path(path).name}: onnxruntime's profile has {len(calls)} model_run events, not {runs}")
    start = calls[0]["ts"]
    per_op: dict = defaultdict(lambda: (0.0, 0))
    for e in trace:
        args = e.get("args") or {}
        if e.get("cat") == "Node" and e["ts"] >= start and "op_name" in args and e["name"].endswith("_kernel_time"):
            op = (args["op_name"], args.get("provider", "CPUExecutionProvider") != "CPUExecutionProvider")
            per_op[op] = (per_op[op][0] + e["dur"] / 1000, per_op[op][1] + 1)
    return _rows(per_op, sum(e["dur"] for e in calls) / 1000 / runs, runs, top)


def ops_torch(model: torch.nn.Module, x: np.ndarray, runs: int, warmup: int = 1, top: int | None = None) -> list[dict]:
    """Per-op rows of eager ``model`` on input ``x``: each op's self CPU time (see the module's note)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    call = "mcq::call"
    inp = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    with torch.no_grad():
        for _ in range(warmup):
            model(inp)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                with record_function(call):
                    model(inp)
    per_op, total = {}, 0.0
    for avg in prof.key_averages():
        if avg.key == call:
            total = avg.cpu_time_total / 1000 / runs
        elif avg.self_cpu_time_total > 0:
            per_op[(avg.key, None)] = (avg.self_cpu_time_total / 1000, avg.count)
    return _rows(per_op, total, runs, top)


def write_ops_csv(path: str | Path, rows: list[dict]) -> None:
    """``rows`` as CSV (op, delegated, ms, share, calls; delegated empty where it does not apply), atomically."""
    import csv

    from mcq.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for r in rows:
            out.writerow([r["op"], "" if r["delegated"] is None else str(r["delegated"]).lower(), f"{r['ms']:.4f}",
                          f"{r['share']:.4f}", r["calls"]])
