"""``--explain``: error maps per image, and the first layer whose output drifts from PyTorch in the runtime."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mcq.cli import main
from mcq.tasks.checkpoint import read_checkpoint
from mcq.export import onnx as onnx_format
from mcq.tasks.processing import dataset_images
from mcq.models.inference import inference_form
from mcq.export.explain import DRIFT_DB, layer_drift, snr_db


@pytest.fixture(scope="module")
def model_and_image(trained_ckpt, synth_data):
    model = inference_form(read_checkpoint(trained_ckpt, "seg").model)
    return model, dataset_images(synth_data, "validation", 64, "mci0", 1)


def test_snr():
    ref = np.ones(100, np.float32)
    assert snr_db(ref, ref) == float("inf")
    assert snr_db(ref * 1.1, ref) == pytest.approx(20.0)  # 10% error is 20 dB


def test_cli_writes_error_maps_and_layer_report(trained_ckpt, synth_data, tmp_path, capsys):
    out = tmp_path / "exports"
    assert main(["export", "onnx", "--checkpoint", str(trained_ckpt), "--data", str(synth_data), "--out", str(out),
                 "--explain", "--json", str(out / "report.json")]) == 0
    printed = capsys.readouterr().out
    assert "first layer below 60 dB: none" in printed and "error maps:" in printed
    report = json.loads((out / "report.json").read_text())[0]
    folder = out / f"{report['artifact']}.explain"
    assert report["explain"]["dir"] == str(folder)
    maps = sorted(folder.glob("image_*.png"))
    assert len(maps) == 3 and Image.open(maps[0]).size == (4 * 64, 64 + 14)  # 3 val images, 4 panels each
    layers = json.loads((folder / "layers.json").read_text())
    model = inference_form(read_checkpoint(trained_ckpt, "seg").model)
    names = {n for n, _ in model.named_modules()}
    assert len(layers["layers"]) > 50 and all(row["layer"] in names for row in layers["layers"])
    assert min(row["snr_db"] for row in layers["layers"]) > DRIFT_DB["fp32"]
    assert not list(out.glob(".*partial*"))


def test_finds_the_layer_an_exporter_broke(model_and_image, monkeypatch):
    """An exporter that corrupts one FPN conv: the drift report must name that conv first, not an earlier layer."""
    model, image = model_and_image
    broken = "neck.fpn_convs.1.conv"
    real_export = onnx_format.export

    def corrupting_export(net, *args, **kwargs):
        with torch.no_grad():
            w = net.model.get_submodule(broken).weight
            saved = w.clone()
            w.mul_(-1.0)
            try:
                real_export(net, *args, **kwargs)
            finally:
                w.copy_(saved)

    monkeypatch.setattr(onnx_format, "export", corrupting_export)
    drift = layer_drift("onnx", model, image, "fp32", None)
    assert drift["first_drift"]["layer"] == broken, drift["first_drift"]
    before = [row for row in drift["layers"][: [r["layer"] for r in drift["layers"]].index(broken)]]
    assert before and all(row["snr_db"] > DRIFT_DB["fp32"] for row in before)


@pytest.mark.slow
def test_executorch_int8_layers_run_on_portable_kernels(model_and_image, synth_data):
    model, image = model_and_image
    calib = dataset_images(synth_data, "training", 64, "mci0", 4)
    drift = layer_drift("executorch", model, image, "int8", calib)
    snrs = [row["snr_db"] for row in drift["layers"]]
    assert len(snrs) > 50 and all(np.isfinite(s) for s in snrs)  # int8 rounding: no layer is exact
    assert drift["output"]["snr_db"] < 60  # quantized, so not fp32-close
    first = drift["first_drift"]
    assert first is None or first["snr_db"] < DRIFT_DB["int8"]


def test_int8_drift_keeps_the_artifacts_float_modules_float(model_and_image, synth_data):
    """An int8 artifact that kept modules float is explained as it is: those modules' layers run float, where full
    int8 drifts in every layer. (Where a kept module's output also feeds a quantized one, onnxruntime's QDQ pair on
    that tensor serves both, in the artifact as here: the float layers after it start from int8 values.)"""
    model, image = model_and_image
    calib = dataset_images(synth_data, "training", 64, "mci0", 4)
    full = layer_drift("onnx", model, image, "int8", calib, "minmax")
    kept = layer_drift("onnx", model, image, "int8", calib, "minmax", ("encoder",))

    def float_close(drift: dict) -> float:
        """The share of the encoder's layers that match PyTorch as fp32 does."""
        encoder = [row["snr_db"] for row in drift["layers"] if row["layer"].startswith("encoder.")]
        return sum(db > DRIFT_DB["fp32"] for db in encoder) / len(encoder)

    assert float_close(kept) > 0.5 and float_close(full) == 0
    assert any(row["snr_db"] < DRIFT_DB["fp32"] for row in kept["layers"] if not row["layer"].startswith("encoder."))
