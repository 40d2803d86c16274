"""Parsers of the on-device harnesses' output (tests/data/devices: hand-written in the tools' formats) into
profile cells that `mcq profile compare` takes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcq.errors import McqError
from mcq.profile.compare import compare
from mcq.profile.devices import main, parse_executor_runner, parse_minibench, parse_xctest

SAMPLES = Path(__file__).parent / "data" / "devices"


def test_minibench():
    cells, device = parse_minibench(SAMPLES / "benchmark_results.json")
    by_model = {c["model"]: c for c in cells}
    int8 = by_model["mci0+fpn"]
    assert (int8["img_size"], int8["precision"], int8["runtime"], int8["backend"]) == (512, "int8", "executorch", "xnnpack")
    assert int8["median_ms"] == 22.9 and int8["latency_stat"].startswith("trimmean")  # trimmed mean preferred
    assert (int8["mean_ms"], int8["load_ms"], int8["peak_mem_mb"]) == (23.4, 41.0, 96.5)
    assert by_model["mci2+fpn"]["median_ms"] == 88.0 and by_model["mci2+fpn"]["latency_stat"].startswith("mean")
    assert device["device"] == "Google Pixel 8"


def test_executor_runner():
    cell = parse_executor_runner((SAMPLES / "executor_runner.txt").read_text(), "mci0_fpn_512_fp32.pte")
    assert (cell["runs"], cell["total_ms"], cell["median_ms"], cell["load_ms"]) == (20, 1350.0, 67.5, 51.3)
    assert cell["precision"] == "fp32" and cell["model"] == "mci0+fpn"
    with pytest.raises(McqError, match="log.txt: no 'Model executed successfully"):
        parse_executor_runner("E executor_runner.cpp:200] Execution of method forward failed", "mci0_fpn_512_fp32.pte",
                              "log.txt")


def test_xctest():
    cell = parse_xctest((SAMPLES / "xctest.txt").read_text(), "mci0_fpn_512_fp16.mlpackage")
    assert cell["runs_ms"] == pytest.approx([13.0, 12.0, 11.0, 12.0, 12.0])
    assert cell["median_ms"] == pytest.approx(12.0) and cell["runtime"] == "coreml" and cell["precision"] == "fp16"
    assert "compute_units" not in cell


def test_xctest_records_its_compute_units(tmp_path):
    out = tmp_path / "profile.json"
    assert main(["xctest", str(SAMPLES / "xctest.txt"), "--artifact", "mci0_fpn_512_fp16.mlpackage", "--compute-units",
                 "CPU+GPU", "--out", str(out)]) == 0
    [cell] = json.loads(out.read_text())["cells"]
    assert cell["compute_units"] == "cpu_and_gpu" and cell["median_ms"] == pytest.approx(12.0)


def test_device_profiles_compare(tmp_path):
    """Phone profiles are profiles: the gate compares two of them (B: 20 runs that took longer)."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["executor-runner", str(SAMPLES / "executor_runner.txt"), "--artifact", "mci0_fpn_512_fp32.pte",
                 "--device", "Pixel 8", "--out", str(a)]) == 0
    slow = (SAMPLES / "executor_runner.txt").read_text().replace("1350.000000 ms", "1620.000000 ms")
    (tmp_path / "slow.txt").write_text(slow)
    assert main(["executor-runner", str(tmp_path / "slow.txt"), "--artifact", "mci0_fpn_512_fp32.pte",
                 "--device", "Pixel 8", "--out", str(b)]) == 0
    text, failures = compare(a, b, "latency+10%")
    assert "Pixel 8" in text and failures == ["mci0+fpn 512 executorch fp32: latency 67.50 -> 81.00 (beyond latency+10%)"]
    assert main(["minibench", str(SAMPLES / "xctest.txt"), "--out", str(tmp_path / "c.json")]) == 2  # not JSON
