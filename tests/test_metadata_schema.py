"""The metadata contract: every exported sidecar follows ``mcq/tasks/metadata.schema.json``; a broken one is refused
with one line naming the file, by ``read_sidecar`` and by the exporter before it writes anything."""

import copy
import json

import pytest

from mcq.errors import McqError
from mcq.export import exporter
from mcq.export.exporter import export_checkpoint
from mcq.export.labels import labels_metadata
from mcq.tasks.schema import SCHEMA_PATH, metadata_errors, read_sidecar, validate_metadata

pytestmark = pytest.mark.filterwarnings("ignore")

# task -> (checkpoint fixture, data fixture)
TASKS = {"seg": ("trained_ckpt", "synth_data"), "depth": ("trained_depth_ckpt", "synth_depth_data"),
         "cls": ("trained_cls_ckpt", "synth_cls_data"), "det": ("trained_det_ckpt", "synth_det_data")}


@pytest.fixture(scope="module", params=list(TASKS))
def onnx_sidecar(request, tmp_path_factory):
    """(task, sidecar path) of an ONNX fp32 export of the task's tiny model."""
    ckpt, data = (request.getfixturevalue(name) for name in TASKS[request.param])
    out = tmp_path_factory.mktemp(f"schema-{request.param}")
    [report] = export_checkpoint(ckpt, ["onnx"], ["fp32"], out=out, data=data, n_images=2)
    assert report["status"] == "ok", report.get("why")
    return request.param, out / f"{report['artifact']}.json"


def test_every_tasks_sidecar_follows_the_schema(onnx_sidecar):
    task, path = onnx_sidecar
    meta = read_sidecar(path.with_suffix(""))
    assert meta["task"] == task and meta["format"] == "onnx" and metadata_errors(meta) == []
    assert ("outputs" in meta) == (task == "det") and ("class_names" in meta) == (task != "depth")


BREAKS = {  # how a sidecar gets broken -> what the error names
    "layout": (lambda m: m["input"].update(layout="NHWC"), "input/layout"),
    "no mean": (lambda m: m["input"].pop("mean"), "'mean' is a required property"),
    "zero std": (lambda m: m["input"].update(std=[0.2, 0.0, 0.2]), "input/std/1"),
    "task": (lambda m: m.update(task="pose"), "task"),
    "palette": (lambda m: m["palette"].pop(), "palette: "),
    "colour": (lambda m: m["palette"][0].__setitem__(0, 300), "palette/0/0"),
    "failed parity": (lambda m: m["parity"].update(passed=False), "parity/passed"),
    "sha256": (lambda m: m["source_checkpoint"].update(sha256="abc"), "source_checkpoint/sha256"),
}


@pytest.mark.parametrize("onnx_sidecar", ["seg"], indirect=True)
@pytest.mark.parametrize("name", list(BREAKS))
def test_a_broken_sidecar_is_refused_in_one_line_naming_the_file(onnx_sidecar, tmp_path, name):
    task, path = onnx_sidecar
    meta = json.loads(path.read_text())
    break_it, named = BREAKS[name]
    break_it(meta)
    (tmp_path / "m.onnx.json").write_text(json.dumps(meta))
    with pytest.raises(McqError) as e:
        read_sidecar(tmp_path / "m.onnx")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'm.onnx.json'}: metadata breaks mcq's schema") and "\n" not in msg
    assert named in msg, msg


def test_task_rules_depend_on_the_task(onnx_sidecar):
    task, path = onnx_sidecar
    meta = json.loads(path.read_text())
    if task == "det":
        meta["output"] = meta["outputs"][0]  # det answers with a list of outputs, never one
        assert any("should not be valid" in e for e in metadata_errors(meta))
    elif task == "depth":
        del meta["output"]["units"]
        assert metadata_errors(meta) == ["output: 'units' is a required property"]
    else:
        meta["output"]["shape"] = [1]
        assert metadata_errors(meta) and metadata_errors(meta)[0].startswith("output/shape")


LABELS_BREAKS = {  # a labels output (`mcq export --outputs labels`) gone wrong -> what the error names
    "logits' shape": (lambda o: o.update(shape=[1, 8, 64, 64]), "output/shape"),
    "no dtype": (lambda o: o.pop("dtype"), "output: 'dtype' is a required property"),
    "float": (lambda o: o.update(dtype="float32"), "output/dtype: 'float32' is not one of ['uint8', 'int32']"),
    "other name": (lambda o: o.update(name="classes"), "output/name"),
}


@pytest.mark.parametrize("onnx_sidecar", ["seg"], indirect=True)
def test_a_seg_output_is_logits_or_labels(onnx_sidecar):
    _, path = onnx_sidecar
    meta = json.loads(path.read_text())
    assert meta["output"]["name"] == "logits" and meta["output"]["dtype"] == "float32"
    labels = labels_metadata(meta, "onnx")
    assert metadata_errors(labels) == [] and metadata_errors(labels_metadata(meta, "coreml")) == []
    assert metadata_errors({**meta, "output": {**meta["output"], "dtype": "uint8"}})[0].startswith("output/dtype")
    for name, (break_it, named) in LABELS_BREAKS.items():
        broken = copy.deepcopy(labels)
        break_it(broken["output"])
        assert any(e.startswith(named) for e in metadata_errors(broken)), (name, metadata_errors(broken))


def test_missing_or_unreadable_sidecar(tmp_path):
    with pytest.raises(McqError, match="m.onnx: its metadata m.onnx.json is missing"):
        read_sidecar(tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").write_text("{not json")
    with pytest.raises(McqError, match="m.onnx.json: not valid JSON"):
        read_sidecar(tmp_path / "m.onnx")


def test_the_schema_is_shipped_and_valid():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))
    with pytest.raises(McqError, match=r"^where.json: .*'task' is a required property"):
        validate_metadata({}, "where.json")


def test_the_exporter_refuses_to_write_a_sidecar_that_breaks_the_schema(trained_ckpt, synth_data, tmp_path,
                                                                        monkeypatch):
    real = exporter.task_metadata

    def nhwc(*args, **kwargs):
        meta = copy.deepcopy(real(*args, **kwargs))
        meta["input"]["layout"] = "NHWC"
        return meta

    monkeypatch.setattr(exporter, "task_metadata", nhwc)
    [report] = export_checkpoint(trained_ckpt, ["onnx"], ["fp32"], out=tmp_path, data=synth_data, n_images=1)
    assert report["status"] == "failed" and "input/layout" in report["why"] and "metadata.schema.json" in report["why"]
    assert list(tmp_path.iterdir()) == []  # neither the artifact nor its sidecar
