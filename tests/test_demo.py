"""The README's main job (`make demo`) on the embedded data reaches the promised accuracy and exports."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_reaches_miou_0_6(tmp_path):
    demo = tmp_path / "demo"
    # the Makefile's own recipe, with this interpreter's environment and the set-up step taken as done, trained for
    # a quarter of the steps (50, held to mIoU 60%; 200 reached 89.14% in a fresh clone on 2026-12-07, with mmseg's
    # heads and exact-resume sampling) to keep the suite's longest test short
    cmd = ["make", "-C", str(ROOT), "-o", ".venv/.installed", "demo", f"DEMO={demo}", f"BIN={Path(sys.executable).parent}",
           "DEMO_STEPS=50"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=3000)  # a guard against a hang, not a speed test
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # make's children too: a timed-out run must not train on unseen
            raise
    assert proc.returncode == 0, stderr[-3000:]
    trained = json.loads((demo / "train" / "metrics.json").read_text())
    evaluated = json.loads((demo / "eval.json").read_text())
    assert trained["encoder"] == "mci0" and trained["head"] == "fpn"
    assert trained["mIoU"] >= 0.6 and evaluated["mIoU"] >= 0.6
    assert "mIoU" in stdout and str(demo / "train") in stdout
    exports = json.loads((demo / "exports" / "report.json").read_text())
    assert {(r["format"], r["precision"]) for r in exports} == {("onnx", "fp32"), ("executorch", "fp32"), ("coreml", "fp16")}
    assert all(r["status"].startswith("ok") for r in exports), exports
    assert "agree %" in stdout
