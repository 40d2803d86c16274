"""Deploy targets (export/*.json, ``mcq.export.targets``): the shipped ones load, a bad file is refused in one line
naming it, ``mcq export --list-targets`` and ``--target`` (flags override the file, which is left as it was), and a
wheel ships the targets."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mcq.cli import main
from mcq.errors import McqError
from mcq.tasks.schema import metadata_errors, read_sidecar
from mcq.export.targets import TARGETS_DIR, Calibration, export_arguments, list_targets, load_target

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (REPO / "export").glob("*.json"))
TINY = {"description": "a test target", "format": "onnx", "backend": None, "precision": "fp32", "img_size": 96,
        "outputs": "logits", "calibration": None, "compute_units": None}


def _cli(capsys, argv: list) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _write(path: Path, **changes) -> Path:
    path.write_text(json.dumps({**TINY, **changes}, indent=2))
    return path


def test_every_shipped_target_loads():
    assert TARGETS_DIR.resolve() == REPO / "export", "the package's target_files link must lead to export/"
    assert list_targets() == SHIPPED and len(SHIPPED) >= 6
    for name in SHIPPED:
        t = load_target(name)
        assert t.name == name and t.outputs == "logits" and t.description
        assert (t.calibration is not None) == (t.precision == "int8" and t.format != "coreml"), name
        assert (t.backend is not None) == (t.format == "executorch"), name
        assert (t.compute_units is not None) == (t.format == "coreml"), name
    assert load_target("android-xnnpack-int8").calibration == Calibration(16, "auto")
    assert load_target("server-onnxruntime-int8").calibration == Calibration(16, "auto")
    assert load_target(REPO / "export" / "web-onnx-fp32.json") == load_target("web-onnx-fp32")


@pytest.mark.parametrize("changes, says", [
    ({"compute_unit": "all"}, "unknown key 'compute_unit'"),
    ({"precision": "int4"}, "precision 'int4' is not one of fp32, fp16, int8"),
    ({"outputs": "probabilities"}, "outputs 'probabilities' is not one of logits, labels"),
    ({"img_size": 0}, "img_size 0 must be a positive integer"),
    ({"calibration": {"images": 16, "method": "minmax"}}, "calibration is for int8"),
    ({"precision": "int8", "calibration": {"images": 16, "method": "moving_average"}},
     "onnx int8 calibrates with auto or minmax or percentile or entropy"),
    ({"precision": "int8"}, 'int8 needs calibration as {"images": 16, "method": "auto"}'),
    ({"compute_units": "all"}, "compute_units is for format coreml"),
    ({"format": "executorch", "backend": "vulkan"}, "backend 'vulkan' is not one of xnnpack, coreml"),
    ({"format": "executorch", "backend": "coreml", "precision": "int8"}, "coreml backend takes fp32 or fp16"),
])
def test_a_bad_target_file_is_one_line_naming_it(tmp_path, changes, says):
    path = _write(tmp_path / "bad.json", **changes)
    with pytest.raises(McqError) as e:
        load_target(path)
    assert str(e.value).startswith(f"{path}: ") and says in str(e.value) and "\n" not in str(e.value)


def test_missing_key_and_broken_json(tmp_path):
    data = dict(TINY)
    del data["img_size"]
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(McqError, match=r"short\.json: missing key 'img_size'"):
        load_target(tmp_path / "short.json")
    (tmp_path / "broken.json").write_text('{"format": "onnx",')
    with pytest.raises(McqError, match=r"broken\.json: not valid JSON"):
        load_target(tmp_path / "broken.json")


def test_list_targets_prints_every_file(capsys):
    rc, out, _ = _cli(capsys, ["export", "--list-targets"])
    assert rc == 0
    lines = out.splitlines()
    assert str(REPO / "export") in lines[0]
    assert [line.split()[0] for line in lines[2:]] == SHIPPED
    assert "executorch/xnnpack  int8" in out and "training" in out


@pytest.mark.parametrize("argv, says", [
    (["--target", "no-such-target"], "unknown deploy target 'no-such-target'; known: " + ", ".join(SHIPPED)),
    (["onnx", "--target", "android-xnnpack-int8"], "exports to executorch, not onnx"),
    ([], "give a format"),
])
def test_target_errors_from_the_cli(capsys, argv, says):
    rc, _, err = _cli(capsys, ["export", "--checkpoint", "missing.ckpt", *argv])
    assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_a_bad_file_through_the_cli(capsys, tmp_path):
    path = _write(tmp_path / "mine.json", precision="bf16")
    rc, _, err = _cli(capsys, ["export", "--target", path, "--checkpoint", "missing.ckpt"])
    assert rc == 2 and f"{path}: precision 'bf16'" in err and len(err.strip().splitlines()) == 1, err


def test_flags_override_the_target():
    t = load_target("android-xnnpack-int8")
    assert export_arguments(t) == dict(formats=["executorch"], precisions=["int8"], img_size=None,
                                       target="android-xnnpack-int8", compute_units=None, outputs="logits", options={},
                                       n_calib=16, calibration="auto")
    over = export_arguments(t, precisions=["fp32", "fp16"], img_size=128, backend="coreml", outputs="labels")
    assert over["precisions"] == ["fp32", "fp16"] and over["img_size"] == 128 and over["outputs"] == "labels"
    assert over["options"] == {"executorch": {"backend": "coreml"}}
    assert export_arguments(load_target("ios17-coreml-fp16"))["compute_units"] == "all"
    server = load_target("server-onnxruntime-int8")
    assert export_arguments(server)["calibration"] == "auto"
    assert export_arguments(server, calibration="entropy")["calibration"] == "entropy"
    assert t == load_target("android-xnnpack-int8"), "the target itself is not changed"


@pytest.mark.parametrize("argv, outputs", [
    (["--target", "web-onnx-fp32"], "logits"), (["--target", "web-onnx-fp32", "--outputs", "labels"], "labels"),
    (["onnx"], "logits"), (["onnx", "--outputs", "labels"], "labels"),
])
def test_the_outputs_flag_overrides_the_target(argv, outputs):
    from mcq.cli import parser
    from mcq.cli.export import export_kwargs

    assert export_kwargs(parser().parse_args(["export", *argv, "--checkpoint", "c.ckpt"]))["outputs"] == outputs


def test_onnx_export_through_a_target_file(capsys, tmp_path, trained_ckpt, synth_data):
    """The target's size (96) is overridden by --img-size 64; its labels outputs make a labels artifact; the sidecar
    and the report name the target."""
    path = _write(tmp_path / "tiny-onnx.json", outputs="labels")
    before = path.read_bytes()
    out, report = tmp_path / "exports", tmp_path / "report.json"
    rc, stdout, err = _cli(capsys, ["export", "--target", path, "--checkpoint", trained_ckpt, "--data", synth_data,
                                    "--img-size", 64, "--out", out, "--json", report])
    assert rc == 0, err
    [r] = json.loads(report.read_text())
    assert r["target"] == "tiny-onnx" and r["format"] == "onnx" and r["precision"] == "fp32" and r["img_size"] == 64
    sidecar = read_sidecar(out / r["artifact"])  # checked against the schema
    assert sidecar["target"] == "tiny-onnx" and sidecar["input"]["shape"] == [1, 3, 64, 64]
    assert r["artifact"].endswith("-labels.onnx") and sidecar["output"]["name"] == "labels"
    assert path.read_bytes() == before
    assert metadata_errors({**sidecar, "target": ""}), "the schema must refuse an empty target name"


def test_the_wheel_ships_the_targets(tmp_path):
    """A wheel built from the checkout holds export/*.json in the package, and the installed package lists them."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("mcq", "export"):
        shutil.copytree(REPO / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    [wheel] = (tmp_path / "dist").glob("mcq-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    shipped = site / "mcq" / "export" / "target_files"
    assert not shipped.is_symlink() and sorted(p.stem for p in shipped.glob("*.json")) == SHIPPED
    listed = subprocess.run([sys.executable, "-c", "from mcq.export.targets import TARGETS_DIR, list_targets; "
                             "print(TARGETS_DIR.resolve()); print(*list_targets())"],
                            cwd=site, check=True, capture_output=True, text=True).stdout.splitlines()
    assert listed == [str(shipped), " ".join(SHIPPED)]


def test_coreml_target_records_its_compute_units(capsys, tmp_path, trained_ckpt, synth_data):
    out = tmp_path / "exports"
    rc, _, err = _cli(capsys, ["export", "coreml", "--target", "ios17-coreml-fp16", "--checkpoint", trained_ckpt,
                               "--data", synth_data, "--img-size", 64, "--out", out])
    assert rc == 0, err
    [package] = out.glob("*.mlpackage")
    assert package.name == "mci0_fpn_64_fp16.mlpackage"
    sidecar = read_sidecar(package)
    assert sidecar["target"] == "ios17-coreml-fp16" and sidecar["compute_units"] == "all"
