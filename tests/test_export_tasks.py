"""Depth and classification models take every export path, with the parity check of their task."""

import numpy as np
import pytest
import torch

from mcq.cli import main
from mcq.export import onnx as onnx_format
from mcq.export.parity import parity
from mcq.tasks.schema import read_sidecar
from mcq.runtime import coreml as coreml_rt
from mcq.runtime import onnx as onnx_rt
from mcq.runtime.backends import runner

pytestmark = pytest.mark.filterwarnings("ignore")

# task -> (parity figure, output name, output shape at 64 px)
TASKS = {"depth": ("mean_rel", "depth", [1, 1, 64, 64]), "cls": ("agreement", "logits", [1, 10])}


@pytest.fixture(scope="module", params=list(TASKS))
def exported(request, task_exports):
    return request.param, *task_exports(request.param)


@pytest.mark.parametrize("fmt", ["onnx", "executorch"])
def test_every_runtime_matches_pytorch_by_the_tasks_measure(exported, fmt):
    task, out, reports = exported
    figure, output, shape = TASKS[task]
    r = reports[fmt]
    assert r["status"] == "ok", r
    assert r["artifact"].startswith(f"mci0_{task}_64_fp32")
    p = r["parity"]
    assert p["numerics"] == "compared" and p["passed"] and p["max_rel"] < 1e-3 and figure in p
    assert p[figure] < 1e-4 if figure == "mean_rel" else p[figure] == 1.0
    sidecar = read_sidecar(out / r["artifact"])  # checked against metadata.schema.json
    assert sidecar["task"] == task and sidecar["output"]["name"] == output and sidecar["output"]["shape"] == shape
    assert ("class_names" in sidecar) == (task == "cls")


def test_onnx_output_is_named_for_the_task(exported):
    task, out, reports = exported
    path = out / reports["onnx"]["artifact"]
    assert [o.name for o in onnx_format.onnx.load(str(path)).graph.output] == [TASKS[task][1]]
    assert onnx_rt.read_metadata(path)["task"] == task
    run = runner("onnx", path)
    assert run(np.zeros((2, 3, 64, 64), np.float32)).shape == (2, *TASKS[task][2][1:])  # batch is dynamic


def test_core_ml_package_is_inspected(exported):
    task, out, reports = exported
    r = reports["coreml"]
    assert r["status"] == "ok (numerics not run here)" and all(r["parity"]["checks"].values()), r
    sidecar = read_sidecar(out / r["artifact"])
    wrong = {**sidecar, "output": {**sidecar["output"], "shape": [1, 7]}}
    assert not coreml_rt.inspect(out / r["artifact"], wrong)["passed"]


def test_depth_parity_is_the_mean_relative_error():
    model = torch.nn.Identity()
    images = torch.full((2, 1, 4, 4), 2.0)
    result = parity(lambda x: x * 1.02, model, images, "fp16", "depth")  # 2% off everywhere; fp16 allows 1%
    assert result["mean_rel"] == pytest.approx(0.02, rel=1e-4) and not result["passed"]
    assert "mean relative error" in result["why"]
    assert parity(lambda x: x * 1.001, model, images, "fp16", "depth")["passed"]


def test_classification_parity_is_top1_agreement():
    model = torch.nn.Identity()
    images = torch.eye(4)[:, :, None, None].reshape(4, 4)  # image i's top class is i
    swap_first = lambda x: x[:, [1, 0, 2, 3]] if x[0, 0] == 1 else x  # noqa: E731 - image 0 answers class 1
    result = parity(swap_first, model, images, "int8", "cls")
    assert result["agreement"] == 0.75 and not result["passed"]  # int8 needs 90%
    assert parity(lambda x: x, model, images, "int8", "cls")["agreement"] == 1.0


def test_a_depth_artifact_is_not_evaluated_as_segmentation(exported, capsys):
    task, out, reports = exported
    path = out / reports["onnx"]["artifact"]
    assert main(["eval", "seg", "--model", str(path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"a {task} model, not a seg one" in err[0] and str(path) in err[0]

