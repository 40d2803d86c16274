"""`mcq profile --per-op`: each runtime's ops and their time (ExecuTorch ETDump, onnxruntime's profiler,
torch.profiler) on the tiny trained mci0 at 64 px; ops/<cell>.csv and report.md's Per-op section."""

from __future__ import annotations

import contextlib
import csv
import io
import json

import numpy as np
import pytest

from conftest import copy_artifact
from mcq.cli import main
from mcq.profile.per_op import OTHER, OUTSIDE, _rows, cut, ops_executorch, ops_onnxruntime, ops_torch


@pytest.fixture(scope="module")
def per_op_run(trained_ckpt, synth_data, executorch_seg, tmp_path_factory):
    """`mcq profile --per-op` of the tiny mci0 through torch, onnxruntime and ExecuTorch (fp32, two runs). The
    ExecuTorch program is the suite's shared one, which the profile reuses (it names the same checkpoint)."""
    out = tmp_path_factory.mktemp("per_op") / "prof"
    copy_artifact(next(r for r in executorch_seg[1] if r["precision"] == "fp32"), out / "artifacts")
    argv = ["profile", "--checkpoint", str(trained_ckpt), "--runtimes", "torch,onnxruntime,executorch", "--precision",
            "fp32", "--runs", "2", "--warmup", "1", "--threads", "1", "--data", str(synth_data), "--parity-images",
            "1", "--per-op", "--out", str(out)]
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    assert rc == 0
    prof = json.loads((out / "profile.json").read_text())
    return out, {c["runtime"]: c for c in prof["cells"]}, prof


def _x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)


def _check_rows(rows: list[dict]) -> None:
    assert rows and all(set(r) == {"op", "delegated", "ms", "share", "calls"} for r in rows)
    assert all(r["ms"] >= 0 and 0 <= r["share"] <= 1 for r in rows)
    assert sum(r["share"] for r in rows) == pytest.approx(1, abs=1e-6)
    ops = [r for r in rows if r["op"] != OUTSIDE]
    assert [r["ms"] for r in ops] == sorted((r["ms"] for r in ops), reverse=True)  # the costliest first
    assert len({(r["op"], r["delegated"]) for r in ops}) == len(ops)  # one row per kind of op


def test_executorch_ops_from_the_etdump(per_op_run, tmp_path):
    import torch

    from mcq.export import executorch as et_format

    out, cells, _ = per_op_run
    rows = ops_executorch(out / "artifacts" / cells["executorch"]["artifact"], _x(), runs=2, threads=1)
    _check_rows(rows)
    by_op = {(r["op"], r["delegated"]): r for r in rows}
    # XNNPACK's own operators, delegated, without their instance counter; the whole program in the delegate
    conv = by_op[("Convolution (NHWC, F32) IGEMM", True)]
    assert conv["calls"] > 5 and conv["ms"] > 0 and not any("#" in r["op"] for r in rows)
    assert not [r for r in rows if r["delegated"] is False]
    assert sum(r["share"] for r in rows if r["delegated"]) > 0.9  # the rest: the runtime's own work
    assert cells["executorch"]["reused"], "the shared program, not another lowering"
    # lowered as torch.export gives it (no rewrites for the delegate), the FPN's nearest upsampling runs outside:
    # the runtime's native calls
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Upsample(scale_factor=2)).eval()
    et_format.export(model, torch.from_numpy(_x()), tmp_path / "plain.pte", "fp32", None, {}, rewrite=False)
    outside = [r for r in ops_executorch(tmp_path / "plain.pte", _x(), runs=1, threads=1) if r["delegated"] is False]
    assert outside and all(r["op"].startswith("native_call_") for r in outside)
    assert any("upsample" in r["op"] for r in outside) and not any("conv" in r["op"].lower() for r in outside)


def test_onnxruntime_and_torch_ops(per_op_run, trained_ckpt):
    from mcq.tasks.checkpoint import read_checkpoint
    from mcq.models.inference import inference_form

    out, cells, _ = per_op_run
    rows = ops_onnxruntime(out / "artifacts" / cells["onnxruntime"]["artifact"], _x(), runs=2, threads=1)
    _check_rows(rows)
    ops = [r for r in rows if r["op"] != OUTSIDE]
    assert ops[0]["op"] == "Conv" and ops[0]["calls"] > 5  # onnxruntime's op types; Conv takes most of mci0's time
    assert {r["delegated"] for r in rows if r["op"] != OUTSIDE} == {False}  # the CPU execution provider
    model = inference_form(read_checkpoint(trained_ckpt, "seg").model)
    rows = ops_torch(model, _x(), runs=2)
    _check_rows(rows)
    assert {r["delegated"] for r in rows} == {None}
    ops = [r["op"] for r in rows if r["op"] != OUTSIDE]
    assert any("conv" in op for op in ops[:3]) and all(op.startswith("aten::") for op in ops)  # ops' self time


def test_profile_per_op_writes_csv_json_and_report(per_op_run):
    out, cells, prof = per_op_run
    assert prof["settings"]["per_op"] is True
    for runtime, cell in cells.items():
        assert cell["status"] == "ran" and cell["per_op"], cell
        _check_rows(cell["per_op"])
        path = out / "ops" / f"mci0+fpn_64_{runtime}_fp32.csv"
        with open(path, newline="") as f:
            table = list(csv.DictReader(f))
        assert [r["op"] for r in table] == [r["op"] for r in cell["per_op"]]  # the CSV holds every row of the JSON
        assert float(table[0]["ms"]) == pytest.approx(cell["per_op"][0]["ms"], abs=1e-4)
        assert {r["delegated"] for r in table} <= {"true", "false", ""}
    # the profiled ops cost about what the timed call does (a profiler adds some; a loose bound on a shared CPU)
    for cell in cells.values():
        assert 0.2 < sum(r["ms"] for r in cell["per_op"]) / cell["median_ms"] < 5, cell
    report = (out / "report.md").read_text()
    section = report.split("## Per-op", 1)[1]
    assert "### mci0+fpn 64 px executorch fp32 (`ops/mci0+fpn_64_executorch_fp32.csv`)" in section
    assert "| Convolution (NHWC, F32) IGEMM | yes |" in section and "| Conv | no |" in section
    torch_part = section.split("### mci0+fpn 64 px torch fp32")[1].split("###")[0]
    assert "| - |" in torch_part and "| yes |" not in torch_part
    assert len(list((out / "ops").glob("*.csv"))) == 3 and not list((out / "ops").glob(".*"))  # no temporary left


def test_top_cut_keeps_the_total():
    per_op = {("a", True): (6.0, 2), ("b", False): (4.0, 2), ("c", True): (2.0, 4), ("d", False): (1.0, 2)}
    full = _rows(per_op, total_ms=8.0, runs=2, top=None)
    assert [(r["op"], r["ms"], r["calls"]) for r in full] == [("a", 3, 1), ("b", 2, 1), ("c", 1, 2), ("d", 0.5, 1),
                                                              (OUTSIDE, 1.5, 0)]
    short = cut(full, 1)
    assert [(r["op"], r["delegated"], r["ms"]) for r in short] == [("a", True, 3), (OTHER, False, 2.5),
                                                                   (OTHER, True, 1), (OUTSIDE, None, 1.5)]
    assert sum(r["share"] for r in short) == pytest.approx(1)
    # ops that outlast the call (a profiler's rounding): no "(not in an op)" row, and shares still sum to 1
    over = _rows(per_op, total_ms=6.0, runs=2, top=None)
    assert OUTSIDE not in [r["op"] for r in over] and sum(r["share"] for r in over) == pytest.approx(1)


def test_a_runtime_without_a_profiler_or_a_failing_one_says_so(tmp_path):
    from mcq.profile import ProfileConfig
    from mcq.profile.profiler import per_op_of_cell
    from mcq.profile.report import format_markdown

    cfg = ProfileConfig(models=["mci0"], per_op=True)
    assert per_op_of_cell(None, "coreml", tmp_path / "m.mlpackage", cfg) == {
        "per_op_note": "coreml has no per-op profiler here"}
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    note = per_op_of_cell(type("Bench", (), {"x": _x()})(), "onnxruntime", broken, cfg)["per_op_note"]
    assert note.startswith("per-op profile failed: ") and "\n" not in note

    def cell(runtime, **extra):
        return {"model": "mci0+fpn", "img_size": 64, "runtime": runtime, "precision": "fp32", "status": "ran",
                "median_ms": 1.0, **extra}

    prof = {"created": "now", "device": {"cpu": "cpu"}, "settings": {"threads": 1, "runs": 1, "warmup": 0,
                                                                      "memory": "m", "data": "d"},
            "cells": [cell("coreml", compute_units="all", per_op_note="coreml has no per-op profiler here")]}
    report = format_markdown(prof, None)
    assert "\nmci0+fpn 64 px coreml/all fp32: coreml has no per-op profiler here.\n" in report
    prof["cells"] = [cell("torch")]
    assert "Per-op" not in format_markdown(prof, None)  # without --per-op, no section
