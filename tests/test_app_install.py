"""`mcq export --app ios|android` and ``install_in_app``: the artifact (and, for Android, its sidecar) lands where the
app's project loads it, replacing the model there; what cannot be installed is refused in one line, before a long
export where the arguments already say so."""

import json
import re
from pathlib import Path

import pytest

from mcq.apps import install
from mcq.apps.install import APPS, install_in_app
from mcq.cli import main
from mcq.errors import McqError
from mcq.tasks.schema import metadata_errors

ROOT = Path(__file__).resolve().parents[1]
IOS, ANDROID = ROOT / "apps" / "ios", ROOT / "apps" / "android"
KOTLIN = ANDROID / "app" / "src" / "main" / "java" / "dev" / "mcq" / "segment"


def _meta(fmt: str) -> dict:
    """A valid sidecar of a tiny seg artifact in ``fmt``."""
    meta = {"task": "seg", "encoder": "mci0", "head": "fpn", "class_names": ["a", "b"], "palette": [[1, 2, 3], [4, 5, 6]],
            "input": {"name": "image", "shape": [1, 3, 64, 64], "layout": "NCHW", "dtype": "float32", "color": "RGB",
                      "range": [0.0, 1.0], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "resize": "stretch"},
            "output": {"name": "logits", "shape": [1, 2, 64, 64], "meaning": "scores"},
            "source_checkpoint": {"path": "x.ckpt", "sha256": "0" * 64}, "recipe": {}, "mcq_version": "0",
            "format": fmt, "precision": "fp32", "parity": {"passed": True, "numerics": "compared"}}
    if fmt == "coreml":
        meta["coreml_input"] = {"type": "image", "color_layout": "RGB", "scale": 1 / 255, "bias": [0, 0, 0],
                                "std_in_model": None}
    assert metadata_errors(meta) == []
    return meta


@pytest.fixture
def apps_dir(tmp_path) -> Path:
    """An apps/ tree with the folders the apps take their models in."""
    for slot in APPS.values():
        (tmp_path / "apps" / slot.model).parent.mkdir(parents=True)
    return tmp_path / "apps"


def _artifact(tmp_path: Path, name: str, fmt: str, content: str = "v1") -> Path:
    path = tmp_path / name
    if name.endswith(".mlpackage"):
        path.mkdir()
        (path / "Manifest.json").write_text(content)
    else:
        path.write_text(content)
    Path(f"{path}.json").write_text(json.dumps(_meta(fmt)))
    return path


def test_install_ios_replaces_the_package(apps_dir, tmp_path):
    old = _artifact(tmp_path, "old.mlpackage", "coreml", "old")
    (old / "stale.bin").write_text("x")
    install_in_app(old, "ios", apps_dir)
    new = _artifact(tmp_path, "mci0_fpn_64_fp16.mlpackage", "coreml", "new")
    [written] = install_in_app(new, "ios", apps_dir)
    assert written == apps_dir / "ios" / "McqSegment" / "McqModel.mlpackage"
    assert sorted(p.name for p in written.iterdir()) == ["Manifest.json"]  # nothing of the old package stays
    assert (written / "Manifest.json").read_text() == "new"


def test_install_android_copies_program_and_sidecar(apps_dir, tmp_path):
    pte = _artifact(tmp_path, "mci0_fpn_64_fp32.pte", "executorch")
    written = install_in_app(pte, "android", apps_dir)
    assets = apps_dir / "android" / "app" / "src" / "main" / "assets"
    assert written == [assets / "model.pte", assets / "model.pte.json"]
    assert (assets / "model.pte").read_text() == "v1"
    assert json.loads((assets / "model.pte.json").read_text())["format"] == "executorch"


def test_install_refuses_in_one_line(apps_dir, tmp_path):
    pte = _artifact(tmp_path, "m.pte", "executorch")
    with pytest.raises(McqError, match=r"m.pte: the ios app runs .mlpackage artifacts \(`mcq export coreml`\)$"):
        install_in_app(pte, "ios", apps_dir)
    Path(f"{pte}.json").unlink()
    with pytest.raises(McqError, match=r"m.pte: its metadata m.pte.json is missing"):
        install_in_app(pte, "android", apps_dir)
    with pytest.raises(McqError, match=r"--app web: no such app"):
        install_in_app(pte, "web", apps_dir)
    with pytest.raises(McqError, match=r"the android app is not there"):
        install_in_app(_artifact(tmp_path, "n.pte", "executorch"), "android", tmp_path / "nowhere")


def test_the_projects_load_what_install_writes():
    assert f"{Path(APPS['ios'].model).stem}" == re.search(r'modelName = "(\w+)"',
                                                          (IOS / "McqSegment" / "Segmenter.swift").read_text())[1]
    assert f'MODEL = "{Path(APPS["android"].model).name}"' in (KOTLIN / "Segmenter.kt").read_text()
    ignored = (IOS / ".gitignore").read_text() + (ANDROID / ".gitignore").read_text()
    assert "McqSegment/McqModel.mlpackage" in ignored and "app/src/main/assets/model.pte.json" in ignored


@pytest.mark.parametrize("given", [False, True])
def test_cli_export_app_installs_the_artifact(given, apps_dir, tmp_path, monkeypatch, capsys):
    """Into the checkout's apps/ by default, into --apps-dir where given (an installed mcq has no apps/)."""
    pte = _artifact(tmp_path, "mci0_fpn_64_fp32.pte", "executorch")
    report = {"artifact": pte.name, "path": str(pte), "format": "executorch", "precision": "fp32", "status": "ok",
              "parity": {"passed": True, "numerics": "compared", "max_abs": 0.0, "max_rel": 0.0, "agreement": 1.0}}
    monkeypatch.setattr("mcq.export.exporter.export_checkpoint", lambda *a, **k: [report])
    monkeypatch.setattr(install, "APPS_DIR", None if given else apps_dir)
    where = ["--apps-dir", str(apps_dir)] if given else []
    assert main(["export", "executorch", "--checkpoint", "x.ckpt", "--app", "android", *where]) == 0
    assert f"android app: {apps_dir / 'android/app/src/main/assets/model.pte'}" in capsys.readouterr().out
    assert (apps_dir / "android" / "app" / "src" / "main" / "assets" / "model.pte.json").is_file()


@pytest.mark.parametrize("argv, why", [
    (["onnx", "--app", "ios"], "--app ios runs coreml artifacts"),
    (["coreml", "--app", "android"], "--app android runs executorch artifacts"),
    (["coreml", "--precision", "fp16,fp32", "--app", "ios"], "--app ios takes one artifact: give one --precision"),
])
def test_cli_export_app_refuses_before_exporting(argv, why, capsys):
    assert main(["export", *argv, "--checkpoint", "missing.ckpt"]) == 2
    err = capsys.readouterr().err.strip()
    assert why in err and "\n" not in err and "missing.ckpt" not in err


def test_an_installed_mcq_asks_for_the_apps_dir_before_exporting(monkeypatch, tmp_path, capsys):
    """No apps/ beside an installed mcq: `--app` without `--apps-dir` is refused in one line naming it; so are an
    `--apps-dir` that lacks the app and an `--apps-dir` without `--app`; all before the checkpoint is read."""
    monkeypatch.setattr(install, "APPS_DIR", None)
    for argv, why in ((["--app", "android"], "--app android: mcq is installed, not run from its source tree: give "
                                             "--apps-dir DIR, the apps/ folder of a checkout"),
                      (["--app", "android", "--apps-dir", str(tmp_path)], f"{tmp_path}/android/app/src/main/assets: "
                       "the android app is not there (--apps-dir: the apps/ folder of mcq's source tree)"),
                      (["--apps-dir", str(tmp_path)], "--apps-dir goes with --app ios|android")):
        assert main(["export", "executorch", "--checkpoint", "missing.ckpt", *argv]) == 2
        assert capsys.readouterr().err.strip() == f"mcq: error: {why}"
