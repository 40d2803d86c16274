"""Mask R-CNN export: the ONNX full model with parity on boxes, scores and masks (through the CLI), the graphs of
``mcq.tasks.detection`` against torchvision's own answer, the det parity check, and (slow) the ExecuTorch and
Core ML ``features`` graphs with the rest in Python."""

import json

import pytest
import torch

from mcq.cli import main
from mcq.export import onnx as onnx_format
from mcq.tasks import detection
from mcq.export.exporter import export_checkpoint
from mcq.models.inference import inference_form
from mcq.export.parity import parity
from mcq.models.detector import DetModel, DetModelConfig
from mcq.models.encoders import normalization
from mcq.tasks.schema import read_sidecar
from mcq.tasks.specs import task_spec
from mcq.runtime import onnx as onnx_rt

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module", params=["torchvision", "mmdet"])
def model(request) -> DetModel:
    """A random detector computing as torchvision's Mask R-CNN does, or as mmdet's (RoIAlign, anchors, masks)."""
    torch.manual_seed(0)
    flavour = dict.fromkeys(("roi_align", "anchors", "mask_paste"), request.param)
    return inference_form(DetModel(DetModelConfig("mci0", 4, img_size=64, fpn_channels=32, roi_batch_size=16,
                                                  **flavour)))


@pytest.fixture(scope="module")
def exported(trained_det_ckpt, synth_det_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("export-det")
    argv = ["export", "onnx", "--checkpoint", str(trained_det_ckpt), "--data", str(synth_det_data), "--out", str(out),
            "--json", str(out / "report.json")]
    assert main(argv) == 0
    return out, json.loads((out / "report.json").read_text())[0]


def test_onnx_full_model_matches_pytorch_on_boxes_scores_and_masks(exported):
    out, r = exported
    assert r["status"] == "ok" and r["artifact"] == "mci0_det_64_fp32.onnx" and r["graph"] == "full", r
    p = r["parity"]
    assert p["numerics"] == "compared" and p["passed"] and p["detections"] > 0
    assert p["agreement"] == 1.0 and p["mask_agreement"] >= 0.999 and p["max_rel"] < 1e-3 and p["score_abs"] < 1e-3


def test_onnx_artifact_says_what_it_holds(exported):
    out, r = exported
    path = out / r["artifact"]
    sidecar = read_sidecar(path)  # checked against metadata.schema.json
    assert onnx_rt.read_metadata(path) == {k: v for k, v in sidecar.items() if k != "parity"}
    assert sidecar["task"] == "det" and sidecar["graph"] == "full" and sidecar["head"] == "maskrcnn"
    assert sidecar["class_names"] and sidecar["input"]["shape"] == [1, 3, 64, 64]
    assert [o["name"] for o in sidecar["outputs"]] == list(detection.DETECTIONS)
    assert [o.name for o in onnx_format.onnx.load(str(path)).graph.output] == list(detection.DETECTIONS)
    run = onnx_rt.run_all(path)
    boxes, labels, scores, masks = run(torch.zeros(1, 3, 64, 64).numpy())
    assert boxes.shape[1:] == (4,) and masks.shape[1:] == (1, 64, 64) and len(labels) == len(scores) == len(boxes)


def test_the_full_graph_is_torchvisions_answer(model):
    image = torch.rand(3, 64, 64)  # square at the model's size: letterbox only normalises
    x, scale = detection.letterbox(image, 64, *normalization("mci0"))
    with torch.no_grad():
        want = model([image])[0]
        got = dict(zip(detection.DETECTIONS, detection.graph_module(model, "full")(x[None])))
    assert scale == 1.0 and len(want["boxes"]) > 0
    for k in detection.DETECTIONS:
        torch.testing.assert_close(got[k], want[k], atol=1e-4, rtol=1e-4)


def test_features_graph_plus_python_post_processing_is_the_full_graph(model):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = detection.graph_module(model, "full")(x)
        outs = detection.graph_module(model, "features")(x)
    assert len(outs) == len(detection.output_names(model, "features")) == 15
    got = detection.detections(model, "features", [o.numpy() for o in outs], (64, 64))
    for k, w in zip(detection.DETECTIONS, want):
        torch.testing.assert_close(got[k], w)


def test_letterbox_keeps_the_aspect_ratio_and_pads_with_the_mean():
    x, scale = detection.letterbox(torch.rand(3, 30, 60), 64, (0.5,) * 3, (0.25,) * 3)
    assert x.shape == (3, 64, 64) and scale == pytest.approx(64 / 60)
    assert x[:, 32:].abs().max() == 0 and x[:, :32].abs().max() > 0


def test_det_parity_counts_detections_that_move_or_vanish(model):
    images = torch.randn(2, 3, 64, 64)
    full = detection.graph_module(model, "full")

    def run(x, shift=0.0, drop=0):
        with torch.no_grad():
            d = dict(zip(detection.DETECTIONS, full(torch.from_numpy(x))))
        keep = slice(drop, None)
        return {**{k: v[keep] for k, v in d.items()}, "boxes": d["boxes"][keep] + shift}

    exact = parity(run, full, images, "fp32", "det")
    assert exact["passed"] and exact["agreement"] == 1.0 and exact["max_abs"] == 0 and exact["detections"] > 0
    moved = parity(lambda x: run(x, shift=0.5), full, images, "fp32", "det")
    assert not moved["passed"] and moved["max_abs"] == pytest.approx(0.5, abs=1e-4) and "max abs error" in moved["why"]
    dropped = parity(lambda x: run(x, drop=1), full, images, "fp32", "det")
    assert dropped["agreement"] < 1.0 and dropped["max_abs"] == 0
    assert dropped["passed"] == (dropped["agreement"] >= task_spec("det").parity_thresholds["fp32"]["agreement"])


def test_det_in_fp16_is_refused_in_one_line(trained_det_ckpt, synth_det_data, tmp_path):
    [r] = export_checkpoint(trained_det_ckpt, ["onnx"], ["fp16"], out=tmp_path, data=synth_det_data, n_images=1)
    assert r["status"] == "failed" and r["why"] == "det models export in fp32 only so far (fp16 requested)"
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_executorch_and_core_ml_hold_the_features_graph(trained_det_ckpt, synth_det_data, tmp_path):
    reports = {r["format"]: r for r in export_checkpoint(trained_det_ckpt, ["executorch", "coreml"], [None],
                                                         out=tmp_path, data=synth_det_data, n_images=2)}
    et, cm = reports["executorch"], reports["coreml"]
    assert et["status"] == "ok" and et["graph"] == "features" and et["parity"]["agreement"] == 1.0, et
    assert et["parity"]["detections"] > 0 and et["parity"]["max_rel"] < 1e-3
    assert cm["status"] == "ok (numerics not run here)" and all(cm["parity"]["checks"].values()), cm
    for r in (et, cm):
        sidecar = read_sidecar(tmp_path / r["artifact"])
        assert sidecar["graph"] == "features" and "detect" in sidecar["postprocess"] and r["precision"] == "fp32"
        assert [o["name"] for o in sidecar["outputs"]][:5] == ["fpn_0", "fpn_1", "fpn_2", "fpn_3", "fpn_pool"]
