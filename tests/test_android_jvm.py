"""The Android app's platform-free Kotlin (`Processing.kt`, `McqMetadata.kt`) compiled with Debian's kotlinc and its
JUnit tests run on the JVM (`apps/android/jvm-test.sh`) against what the current mcq writes: the sidecars of the
models the app shows (ExecuTorch exports of seg and depth, and the seg one as `--outputs labels` makes it), each with
its reference vector (`mcq app reference`), and sidecars it refuses (every other task of the schema, inputs it cannot
feed). A change to mcq's pre-processing or to the sidecar's names fails here. Without kotlinc, JUnit 4 or Android's
org.json (`apt-get install kotlin junit4 libandroid-json-java`) it is skipped, saying so; MCQ_REQUIRE_KOTLIN=1 (CI)
makes that a failure."""

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mcq.apps.reference import write_reference
from mcq.export.labels import labels_metadata
from mcq.tasks.schema import SCHEMA_PATH, read_sidecar, validate_metadata

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

SCRIPT = Path(__file__).resolve().parents[1] / "apps" / "android" / "jvm-test.sh"
TASKS = {"seg", "depth"}  # what the app shows (McqMetadata.TASKS)
ACCEPTED = [*TASKS, "seg-labels"]  # seg-labels: the seg export's sidecar as `--outputs labels` writes it
# the seg sidecar changed into one the app cannot feed: name -> (the change, what the refusal says)
UNFED = {"nhwc": (lambda m: m["input"].update(layout="NHWC"), "NCHW RGB"),
         "bgr": (lambda m: m["input"].update(color="BGR"), "NCHW RGB"),
         "letterbox": (lambda m: m["input"].update(resize="letterbox"), "only stretches"),
         "no-palette": (lambda m: m.pop("palette"), "without class_names and palette")}


@pytest.fixture(scope="module")
def kotlin() -> None:
    check = subprocess.run([SCRIPT, "--check"], capture_output=True, text=True)
    if check.returncode:
        why = f"{check.stderr.strip()} (MCQ_REQUIRE_KOTLIN=1 makes this a failure)"
        (pytest.fail if os.environ.get("MCQ_REQUIRE_KOTLIN") == "1" else pytest.skip)(why)


def _refused_tasks() -> set[str]:
    """The schema's tasks that the app does not show."""
    return set(json.loads(SCHEMA_PATH.read_text())["properties"]["task"]["enum"]) - TASKS


@pytest.fixture(scope="module")
def sidecars(executorch_seg, task_exports, tmp_path_factory) -> Path:
    """A folder as McqMetadataTest.kt reads it: accepted/NAME.pte.json with NAME.reference.json beside, and
    refused/NAME.pte.json. The ExecuTorch fp32 exports of the tiny seg and depth runs are the suite's shared ones."""
    root = tmp_path_factory.mktemp("android")
    accepted, refused = root / "accepted", root / "refused"
    accepted.mkdir()
    refused.mkdir()
    exports = {"seg": next(r for r in executorch_seg[1] if r["precision"] == "fp32"),
               "depth": task_exports("depth")[1]["executorch"]}
    for name, report in exports.items():
        assert report["status"] == "ok", report.get("why")
        shutil.copyfile(f"{report['path']}.json", accepted / f"{name}.pte.json")
        write_reference(read_sidecar(report["path"]), accepted / f"{name}.reference.json")
    seg = json.loads((accepted / "seg.pte.json").read_text())
    labels = labels_metadata(seg, seg["format"])
    validate_metadata(labels, "seg-labels.pte.json")
    (accepted / "seg-labels.pte.json").write_text(json.dumps(labels))
    write_reference(labels, accepted / "seg-labels.reference.json")
    for task in _refused_tasks():
        (refused / f"{task}.pte.json").write_text(json.dumps({**seg, "task": task}))
    for name, (change, _) in UNFED.items():
        meta = copy.deepcopy(seg)
        change(meta)
        (refused / f"{name}.pte.json").write_text(json.dumps(meta))
    return root


def _summary(meta: dict) -> str:
    """What the app says of a model (McqMetadata.summary), from the sidecar by the schema's names."""
    h, w = meta["input"]["shape"][-2:]
    out = meta["output"]
    what = (f"{len(meta['class_names'])} classes" if meta["task"] == "seg"
            else f"depth in {out['units']} up to {float(out['max_depth'])}")
    return f"{meta['encoder']} {meta['head']}, {meta['precision']} {w}x{h}, {what}"


def test_the_apps_kotlin_reads_mcqs_sidecars_and_processes_like_mcq(kotlin, sidecars):
    reference = sidecars / "accepted" / "seg.reference.json"
    run = subprocess.run([SCRIPT, f"-Dmcq.reference={reference}", f"-Dmcq.sidecars={sidecars}"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "\nOK (" in run.stdout, (run.stdout + run.stderr)[-6000:]
    said = dict(re.findall(r"(?:accepted|refused) (\S+)\.pte\.json: (.*)", run.stdout))
    for name in ACCEPTED:
        assert said[name] == _summary(json.loads((sidecars / "accepted" / f"{name}.pte.json").read_text()))
    for task in _refused_tasks():
        assert f"a {task} model" in said[task], said[task]
    for name, (_, why) in UNFED.items():
        assert why in said[name], said[name]
