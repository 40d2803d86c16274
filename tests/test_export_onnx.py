"""ONNX export: one self-contained file, checked against PyTorch, carrying its metadata; eval and predict on it."""

import json

import numpy as np
import pytest
from PIL import Image

from mcq.cli import main
from mcq.runtime.evaluate import evaluate_seg_model
from mcq.train.evaluate import evaluate
from mcq.export import onnx as onnx_format
from mcq.export.exporter import export_checkpoint
from mcq.tasks.metadata import sha256
from mcq.tasks.schema import read_sidecar
from mcq.tasks.specs import task_spec
from mcq.runtime import onnx as onnx_rt
from mcq.runtime.backends import runner


@pytest.fixture(scope="module")
def exported(trained_ckpt, synth_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    return out, export_checkpoint(trained_ckpt, ["onnx"], ["fp32", "fp16", "int8"], out=out, data=synth_data, n_images=3,
                                  n_calib=4, calibration="minmax", int8_fallback="off")  # the search: test_int8_search


def test_fp32_and_fp16_pass_their_thresholds(exported, trained_ckpt):
    out, reports = exported
    by_precision = {r["precision"]: r for r in reports}
    fp32, fp16 = by_precision["fp32"], by_precision["fp16"]
    assert fp32["status"] == "ok", fp32
    assert fp32["parity"]["max_rel"] < 1e-3 and fp32["parity"]["agreement"] >= 0.999
    assert fp16["status"] == "ok" and fp16["parity"]["agreement"] >= 0.99
    path = out / fp32["artifact"]
    assert not list(path.parent.glob("*.data")), "the model must be one self-contained file"
    inside = onnx_rt.read_metadata(path)
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert inside["class_names"] == sidecar["class_names"] and len(sidecar["palette"]) == len(sidecar["class_names"])
    assert sidecar["source_checkpoint"]["sha256"] == sha256(trained_ckpt)
    assert sidecar["parity"]["passed"] and sidecar["input"]["shape"] == [1, 3, 64, 64]


def test_int8_is_checked_and_kept_only_if_it_passes(exported):
    out, reports = exported
    int8 = next(r for r in reports if r["precision"] == "int8")
    assert 0.0 <= int8["parity"]["agreement"] <= 1.0
    kept = (out / int8["artifact"]).exists()
    assert kept == (int8["status"] == "ok"), int8
    assert not list(out.glob(".partial-*"))


def test_report_and_sidecar_carry_the_miou_against_the_checkpoint(exported, trained_ckpt, synth_data):
    """Each kept artifact's mIoU through onnxruntime is `mcq eval seg --model`'s; the checkpoint's, in PyTorch on the
    same images at the same size, is Lightning's; the drop is their difference (none for fp32)."""
    out, reports = exported
    kept = {r["precision"]: r for r in reports if r["status"] == "ok"}
    assert {"fp32", "fp16"} <= set(kept), reports
    checkpoint = 100 * evaluate("seg", trained_ckpt, synth_data, workers=0, accelerator="cpu")["mIoU"]
    for r in kept.values():
        acc = r["accuracy"]
        assert acc["metric"] == "mIoU" and acc["images"] == 3
        assert acc["checkpoint"] == pytest.approx(checkpoint, abs=0.5)
        assert acc["artifact"] == pytest.approx(100 * evaluate_seg_model(r["path"], synth_data)["mIoU"])
        assert acc["drop"] == pytest.approx(acc["checkpoint"] - acc["artifact"])
        assert read_sidecar(r["path"])["accuracy"] == acc
    assert abs(kept["fp32"]["accuracy"]["drop"]) < 0.1


def test_int8_export_line_shows_its_miou_drop(trained_ckpt, synth_data, tmp_path, monkeypatch, capsys):
    """`mcq export --precision int8 --eval-images N`: the report, the sidecar and the artifact's line give its mIoU on
    the first N validation images against the checkpoint's on the same images."""
    from mcq.runtime.evaluate import seg_eval_set, seg_figures
    from mcq.runtime.artifacts import open_model

    monkeypatch.setitem(task_spec("seg").parity_thresholds["int8"], "agreement", 0.0)  # kept whatever its agreement
    out = tmp_path / "x"
    assert main(["export", "onnx", "--checkpoint", str(trained_ckpt), "--data", str(synth_data), "--out", str(out),
                 "--precision", "int8", "--calibration", "minmax", "--int8-fallback", "off", "--eval-images", "2",
                 "--json", str(out / "report.json")]) == 0
    (report,) = json.loads((out / "report.json").read_text())
    acc = report["accuracy"]
    opened = open_model(report["path"])
    images = seg_eval_set(synth_data, opened.meta, report["path"])
    figure = seg_figures(opened.run, images, opened.meta["class_names"], 2)
    assert acc["images"] == 2 and acc["artifact"] == pytest.approx(100 * figure["mIoU"])
    assert acc["drop"] == pytest.approx(acc["checkpoint"] - acc["artifact"])
    assert read_sidecar(report["path"])["accuracy"] == acc
    line = (f"{report['artifact']}: mIoU {acc['artifact']:.2f} against {acc['checkpoint']:.2f} for the checkpoint in "
            f"PyTorch (drop {acc['drop']:.2f} points) on 2 validation images")
    assert line in capsys.readouterr().out


def test_a_wrong_artifact_is_refused_and_removed(trained_ckpt, synth_data, tmp_path, monkeypatch):
    """The exporter's check, common to every format: an artifact that does not match PyTorch is not kept."""
    real = onnx_rt.run_all

    def corrupt(path, threads=None):
        run = real(path, threads)
        noise = np.random.default_rng(0).normal(0, 1, (1,)).astype(np.float32)
        return lambda x: [np.roll(run(x)[0], 1, axis=1) + noise]

    monkeypatch.setattr(onnx_rt, "run_all", corrupt)
    (report,) = export_checkpoint(trained_ckpt, ["onnx"], ["fp32"], out=tmp_path, data=synth_data, n_images=2)
    assert report["status"] == "failed" and "parity" in report, report
    assert not report["parity"]["passed"]
    assert list(tmp_path.iterdir()) == []


def test_dynamic_batch(exported):
    out, reports = exported
    run = runner("onnx", out / reports[0]["artifact"])
    assert run(np.zeros((2, 3, 64, 64), np.float32)).shape[:2] == (2, 8)


def test_eval_and_predict_through_onnxruntime(exported, trained_ckpt, synth_data, tmp_path, capsys):
    out, reports = exported
    model = out / reports[0]["artifact"]
    assert main(["eval", "seg", "--model", str(model), "--data", str(synth_data), "--json", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["runtime"] == "onnxruntime" and metrics["img_size"] == 64
    assert metrics["mIoU"] == pytest.approx(evaluate("seg", trained_ckpt, synth_data, workers=0)["mIoU"], abs=0.01)
    image = sorted((synth_data / "images" / "validation").iterdir())[0]
    assert main(["predict", str(image), "--model", str(model), "--out", str(tmp_path / "pred")]) == 0
    mask = Image.open(tmp_path / "pred" / f"{image.stem}_mask.png")
    overlay = Image.open(tmp_path / "pred" / f"{image.stem}_overlay.png")
    assert mask.mode == "P" and mask.size == overlay.size == Image.open(image).size
    assert np.asarray(mask).max() < 8
    assert " ms (onnxruntime)" in capsys.readouterr().out


def test_int8_graph_changes_keep_the_model_and_its_output_float(trained_ckpt, synth_data, tmp_path):
    """int8 runs the patch embeddings depthwise on repeated channels (the same function) and upsamples in float."""
    import onnx
    import torch

    from mcq.tasks.checkpoint import read_checkpoint
    from mcq.models.inference import inference_form
    from mcq.tasks.processing import dataset_images

    model = inference_form(read_checkpoint(trained_ckpt, "seg").model)
    swapped = onnx_format._repeated_depthwise(model)
    assert sum(isinstance(m, onnx_format._RepeatedDepthwise) for m in swapped.modules()) == 3  # mci0: stages 1-3
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(swapped(x), model(x), rtol=1e-5, atol=1e-5)
    calib = dataset_images(synth_data, "training", 64, "mci0", 4)
    onnx_format.export(model, calib[:1], tmp_path / "m.onnx", "int8", calib, {})
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    last = next(n for n in graph.node if graph.output[0].name in n.output)
    producers = {o: n.op_type for n in graph.node for o in n.output}
    assert last.op_type == "Resize" and producers[last.input[0]] == "DequantizeLinear"
    weights = {i.name: list(i.dims) for i in graph.initializer}
    producer_inputs = {o: n.input for n in graph.node for o in n.output}
    grouped = []  # (groups, output channels) of every grouped conv; the weight arrives through a DequantizeLinear
    for n in graph.node:
        groups = next((a.i for a in n.attribute if a.name == "group"), 1)
        if n.op_type == "Conv" and groups > 1:
            w = n.input[1] if n.input[1] in weights else producer_inputs[n.input[1]][0]
            grouped.append((groups, weights[w][0]))
    assert len(grouped) >= 3 and all(g == out for g, out in grouped), grouped  # all depthwise, none multiplying


def test_calibration_runs_in_priority_order(tmp_path):
    """int8 calibration's session runs its added reductions in priority order (memory: see the context manager);
    onnxruntime's own method is back afterwards."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    from onnxruntime.quantization.calibrate import CalibraterBase, CalibrationMethod, create_calibrator

    graph = helper.make_graph([helper.make_node("Relu", ["image"], ["logits"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 4, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "m.onnx")
    original = CalibraterBase.create_inference_session
    with onnx_format._calibration_in_priority_order():
        calibrator = create_calibrator(tmp_path / "m.onnx", augmented_model_path=str(tmp_path / "aug.onnx"),
                                       calibrate_method=CalibrationMethod.MinMax)
    assert calibrator.infer_session.get_session_options().execution_order == ort.ExecutionOrder.PRIORITY_BASED
    assert CalibraterBase.create_inference_session is original
