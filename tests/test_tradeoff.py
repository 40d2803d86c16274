"""benchmarks/tradeoff.py in reduced form: the printed ratios are positive and those of the JSON it writes."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "tradeoff.py"


def test_tradeoff_prints_the_ratios_it_writes(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("tradeoff", SCRIPT)
    tradeoff = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tradeoff)
    out = tmp_path / "tradeoff.json"
    tradeoff.main(["--runtime", "torch", "--pairs", "mci0@64:mci0@96", "--runs", "2", "--blocks", "2", "--warmup", "0",
                   "--json", str(out)])
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    [pair] = result["pairs"]
    line = next(line for line in text.splitlines() if line.startswith("mci0+fpn@64 / mci0+fpn@96: "))
    printed = [float(v) for v in re.findall(r"= ([0-9.]+)x", line)]
    expected = [pair["latency_ratio"], pair["params_ratio"], pair["gflops_ratio"]]
    assert all(v > 0 for v in printed) and printed == [round(v, 2) for v in expected]
    assert pair["params_ratio"] == pytest.approx(1.0) and pair["gflops_ratio"] == pytest.approx((64 / 96) ** 2, rel=0.1)
    assert len(pair["a"]["runs_ms"]) == 4 and result["matmul_gmacs"] > 0  # two blocks of two calls
    floors = [float(v) for v in re.findall(r"= ([0-9.]+)x its matmul floor", text)]
    assert floors == [round(pair[k]["x_floor"], 2) for k in ("a", "b")] and all(v > 0 for v in floors)
    assert "random init" in text
