"""`mcq export --outputs labels`: a seg artifact that returns class indices (the argmax in the graph), checked on its
labels, described by its sidecar, read by `mcq predict` and `mcq eval seg --model`; other tasks refuse it."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mcq.cli import main
from mcq.tasks.checkpoint import read_checkpoint
from mcq.tasks.classmaps import labels_at
from mcq.errors import McqError
from mcq.export import executorch as et_format, onnx as onnx_format
from mcq.tasks.processing import dataset_images
from mcq.models.inference import inference_form
from mcq.export.labels import Labels, check_outputs
from mcq.export.parity import parity
from mcq.tasks.schema import read_sidecar
from mcq.runtime.backends import runner

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.mark.parametrize("fmt", ["onnx", "executorch"])
def test_labels_artifact_gives_pytorchs_classes(labels_seg, fmt, trained_ckpt, synth_data):
    out, reports = labels_seg
    r = reports[fmt]
    assert r["status"] == "ok", r
    assert r["artifact"] == f"mci0_fpn_64_fp32-labels{'.onnx' if fmt == 'onnx' else '.pte'}"
    p = r["parity"]
    assert p["numerics"] == "compared" and p["passed"] and p["agreement"] == 1.0
    assert "max_rel" not in p and "max_rel" not in p["thresholds"] and "no max abs / max rel" in p["note"]
    sidecar = read_sidecar(out / r["artifact"])  # checked against metadata.schema.json
    assert sidecar["output"]["name"] == "labels" and sidecar["output"]["dtype"] == "uint8"
    assert sidecar["output"]["shape"] == [1, 64, 64]
    x = dataset_images(synth_data, "validation", 64, "mci0", 2)
    with torch.no_grad():
        want = inference_form(read_checkpoint(trained_ckpt).model)(x).argmax(1).numpy()
    run = runner(fmt, out / r["artifact"])
    got = np.concatenate([run(image[None].numpy()) for image in x])
    assert got.dtype == np.uint8 and got.shape == (2, 64, 64) and np.array_equal(got, want)


def test_onnx_takes_the_argmax_as_topk_on_logits_made_classes_last_before_upsampling(labels_seg):
    out, reports = labels_seg
    graph = onnx_format.onnx.load(str(out / reports["onnx"]["artifact"])).graph
    ops = [n.op_type for n in graph.node]
    assert "ArgMax" not in ops and ops[-6:] == ["Conv", "Transpose", "Resize", "TopK", "Squeeze", "Cast"]
    consts = {i.name: onnx_format.onnx.numpy_helper.to_array(i) for i in graph.initializer}
    assert consts[graph.node[-4].input[2]].tolist() == [1, 4, 4, 1]  # upsampled in NHWC
    assert [o.name for o in graph.output] == ["labels"]
    assert graph.output[0].type.tensor_type.elem_type == onnx_format.onnx.TensorProto.UINT8
    run = runner("onnx", out / reports["onnx"]["artifact"])
    assert run(np.zeros((2, 3, 64, 64), np.float32)).shape == (2, 64, 64)  # the batch stays dynamic


def test_argmax_as_topk_keeps_the_first_of_equal_maxima(tmp_path):
    ties = torch.tensor([[[[1.0]], [[3.0]], [[3.0]], [[0.0]]]]).expand(1, 4, 2, 2).contiguous()  # classes 1, 2 tie
    onnx_format.export(Labels(nn.Identity(), "uint8", True), ties, tmp_path / "t.onnx", "fp32", None,
                       {"output": {"name": "labels"}})
    assert runner("onnx", tmp_path / "t.onnx")(ties.numpy()).tolist() == [[[1, 1], [1, 1]]]


def test_executorch_runs_the_argmax_after_the_delegate(labels_seg):
    delegation = labels_seg[1]["executorch"]["delegation"]
    assert delegation["segments"] == 1, delegation
    assert set(delegation["ops_outside"]) == {"argmax_default", "dim_order_ops__to_dim_order_copy_default"}


def test_core_ml_labels_are_int32(labels_seg):
    out, reports = labels_seg
    r = reports["coreml"]
    assert r["status"] == "ok (numerics not run here)" and all(r["parity"]["checks"].values()), r
    assert r["artifact"] == "mci0_fpn_64_fp32-labels.mlpackage"
    sidecar = read_sidecar(out / r["artifact"])
    assert sidecar["output"] | {"meaning": ""} == {"name": "labels", "shape": [1, 64, 64], "dtype": "int32",
                                                   "meaning": ""}
    import coremltools as ct
    from coremltools.proto import FeatureTypes_pb2

    [output] = ct.models.MLModel(str(out / r["artifact"]), skip_model_load=True).get_spec().description.output
    assert output.name == "labels" and list(output.type.multiArrayType.shape) == [1, 64, 64]
    assert output.type.multiArrayType.dataType == FeatureTypes_pb2.ArrayFeatureType.INT32


def test_predict_and_eval_read_labels(labels_seg, trained_ckpt, synth_data, tmp_path, capsys):
    out, reports = labels_seg
    labels = out / reports["onnx"]["artifact"]
    image = sorted((synth_data / "images" / "validation").iterdir())[0]  # 64 px: the input size
    for model, folder in ((labels, "labels"), (trained_ckpt, "ckpt")):
        assert main(["predict", str(image), "--model", str(model), "--out", str(tmp_path / folder)]) == 0
    masks = [np.asarray(Image.open(tmp_path / f / f"{image.stem}_mask.png")) for f in ("labels", "ckpt")]
    assert np.array_equal(*masks)  # at the input size, resizing the labels changes nothing
    assert main(["eval", "seg", "--model", str(labels), "--data", str(synth_data)]) == 0
    assert "through onnxruntime" in capsys.readouterr().out


def test_labels_resize_to_the_image_nearest():
    labels = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    assert labels_at(labels, 2, 2).tolist() == [[5, 7], [13, 15]]  # the pixel whose centre is nearest
    assert labels_at(labels, 8, 4)[::2].tolist() == labels[0].tolist() and labels_at(labels, 4, 4).dtype == np.uint8


def test_labels_parity_is_the_share_of_equal_classes():
    model = Labels(nn.Identity(), "uint8", False)
    images = torch.zeros(2, 4, 4, 4)  # two "images" of 4 x 4 logits of 4 classes
    images[:, 1] = torch.eye(4)  # pixel (i, j): class 1 where i == j, else 0
    flip_one = lambda x: np.where(np.arange(4) == 0, 1 - x.argmax(1), x.argmax(1)).astype(np.uint8)  # noqa: E731
    result = parity(flip_one, model, images, "fp32", "seg")
    assert result["agreement"] == 0.75 and not result["passed"] and "agreement 75.00% < 99.9%" in result["why"]
    assert parity(lambda x: x.argmax(1), model, images, "fp32", "seg")["passed"]


def test_half_programs_keep_integer_outputs():
    half = et_format._Half(Labels(nn.Conv2d(3, 4, 1), "uint8", True))
    assert half(torch.randn(1, 3, 8, 8)).dtype == torch.uint8


def test_onnx_int8_keeps_the_upsampling_and_the_argmax_float(tmp_path):
    model = Labels(nn.Sequential(nn.Conv2d(3, 5, 3, stride=4, padding=1), nn.Upsample(scale_factor=4, mode="bilinear")),
                   "uint8", True).eval()
    calib = torch.randn(2, 3, 32, 32)
    onnx_format.export(model, calib[:1], tmp_path / "q.onnx", "int8", calib, {"output": {"name": "labels"}})
    graph = onnx_format.onnx.load(str(tmp_path / "q.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and ops[-5:] == ["DequantizeLinear", "Resize", "TopK", "Squeeze", "Cast"], ops


@pytest.mark.parametrize("task, says", [
    ("depth", "--outputs labels is for segmentation models, not depth: leave --outputs out"),
    ("cls", "--outputs labels is for segmentation models, not classification: leave --outputs out"),
    ("det", "not detection"),
])
def test_other_tasks_refuse_labels(task, says):
    with pytest.raises(McqError, match=says.replace("(", r"\(").replace(")", r"\)")):
        check_outputs(task, "labels")
    check_outputs(task, "logits")
    with pytest.raises(McqError, match="--outputs scores: not one of logits, labels"):
        check_outputs("seg", "scores")


def test_the_cli_refuses_labels_of_a_depth_model_in_one_line(trained_depth_ckpt, tmp_path, capsys):
    assert main(["export", "onnx", "--checkpoint", str(trained_depth_ckpt), "--outputs", "labels",
                 "--out", str(tmp_path)]) == 2
    [err] = capsys.readouterr().err.strip().splitlines()
    assert str(trained_depth_ckpt) in err and "--outputs labels is for segmentation models, not depth" in err
    assert not list(tmp_path.iterdir())
