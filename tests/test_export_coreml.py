"""Core ML export: an ML program package with an image input, its metadata inside; checked without macOS."""

import json
import shutil

import numpy as np
import pytest
import torch

from mcq.errors import McqError
from mcq.export import coreml
from mcq.export.exporter import export_checkpoint
from mcq.runtime.backends import SUFFIXES, format_for
from mcq.runtime.artifacts import open_model
from mcq.tasks.schema import read_sidecar
from mcq.runtime import coreml as coreml_rt
from mcq.runtime.backends import runner

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def exported(trained_ckpt, synth_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("coreml")
    reports = export_checkpoint(trained_ckpt, ["coreml"], ["fp16", "fp32", "int8"], out=out, data=synth_data, n_images=2)
    return out, {r["precision"]: r for r in reports}


@pytest.mark.parametrize("precision", ["fp16", "fp32", "int8"])
def test_exports_and_is_inspected(exported, precision):
    out, reports = exported
    r = reports[precision]
    assert r["status"] == "ok (numerics not run here)", r
    pkg = out / r["artifact"]
    assert r["artifact"].endswith(f"_{precision}.mlpackage") and pkg.is_dir()
    sidecar = read_sidecar(pkg)  # checked against metadata.schema.json
    assert sidecar["parity"]["numerics"].startswith("not run") and sidecar["parity"]["passed"]
    assert all(sidecar["parity"]["checks"].values()) and sidecar["parity"]["precision"] == precision
    assert sidecar["coreml_input"]["type"] == "image" and sidecar["precision"] == precision
    inside = coreml_rt.read_metadata(pkg)
    assert inside["class_names"] == sidecar["class_names"] and inside["coreml_input"] == sidecar["coreml_input"]
    assert coreml_rt.inspect(pkg, sidecar)["passed"]
    assert not list(out.glob(".partial-*"))


def test_int8_stores_compressed_weights(exported):
    _, reports = exported
    assert reports["int8"]["parity"]["checks"]["int8_weights"]


def test_inspect_fails_on_tampered_metadata_or_wrong_shape(exported, tmp_path):
    import coremltools as ct

    out, reports = exported
    pkg = out / reports["fp16"]["artifact"]
    meta = json.loads((out / f"{pkg.name}.json").read_text())
    mlmodel = ct.models.MLModel(str(pkg), skip_model_load=True)
    inside = json.loads(mlmodel.user_defined_metadata["mcq"])
    inside["class_names"] = inside["class_names"][::-1]
    mlmodel.user_defined_metadata["mcq"] = json.dumps(inside)
    tampered = tmp_path / "tampered.mlpackage"
    mlmodel.save(str(tampered))
    result = coreml_rt.inspect(tampered, meta)
    assert not result["passed"] and not result["checks"]["metadata"] and "metadata" in result["why"]
    wrong = {**meta, "input": {**meta["input"], "shape": [1, 3, 32, 32]}}
    result = coreml_rt.inspect(pkg, wrong)
    assert not result["passed"] and not result["checks"]["input"] and "32x32" in result["why"]
    result = coreml_rt.inspect(tmp_path / "missing.mlpackage", meta)
    assert not result["passed"] and result["why"]


def test_open_model_says_core_ml_needs_macos(exported, tmp_path):
    out, reports = exported
    pkg = out / reports["fp16"]["artifact"]
    with pytest.raises(McqError, match="needs macOS"):
        open_model(pkg)
    assert runner("coreml", pkg) is None and format_for(str(pkg)) == "coreml"


@pytest.mark.parametrize("mean,std", [((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
                                      ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
def test_image_input_reproduces_the_normalisation(mean, std):
    fed = coreml._image_input(mean, std)
    pixels = np.arange(256, dtype=np.float64)[None, :].repeat(3, 0)
    got = fed["scale"] * pixels + np.asarray(fed["bias"])[:, None]
    if fed["std_in_model"]:
        got = got / np.asarray(fed["std_in_model"])[:, None]
    want = (pixels / 255.0 - np.asarray(mean)[:, None]) / np.asarray(std)[:, None]
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert (fed["std_in_model"] is None) == (len(set(std)) == 1)


def test_per_channel_std_is_divided_inside(tmp_path):
    """A non-uniform std goes through the wrapper module; the package still converts and inspects."""
    model = torch.nn.Conv2d(3, 4, 1).eval()
    k, size = 4, 16
    meta = {"task": "seg", "encoder": "toy", "head": "none", "class_names": list("abcd"), "palette": [],
            "input": {"shape": [1, 3, size, size], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "output": {"name": "logits", "shape": [1, k, size, size], "meaning": "scores"}, "precision": "fp32",
            "mcq_version": "0"}
    pkg = tmp_path / f"toy{SUFFIXES['coreml']}"
    coreml.export(model, torch.randn(1, 3, size, size), pkg, "fp32", None, meta)
    assert meta["coreml_input"]["std_in_model"] == meta["input"]["std"]
    result = coreml_rt.inspect(pkg, meta)
    assert result["passed"], result
    shutil.rmtree(pkg)
