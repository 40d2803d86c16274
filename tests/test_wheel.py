"""mcq as a wheel: built from the checkout's files (`python -m build`: the sdist, then the wheel from it), installed
non-editable in a fresh venv and run in a folder of its own. `mcq profile` shows the published baselines, `mcq export
--app android` needs `--apps-dir` and installs there, and `mcq app web --check` serves the page from the package,
saying where npm puts onnxruntime-web until it is there. The fresh venv takes the dependencies from the running
interpreter's site-packages (a .pth file), not from a registry; the .pth files in there, the checkout's editable
install among them, are not processed, so mcq comes from the wheel."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import web_app_absent
from mcq.apps.browser import browser_missing
from mcq.apps.web import ORT, WEB_DIR
from mcq.export.exporter import export_checkpoint
from mcq.profile.accuracy import load_baselines

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


class Installed(NamedTuple):
    """The fresh venv, its site-packages (where mcq is installed) and a folder of its own to run mcq in."""

    venv: Path
    site: Path
    work: Path


def _ok(*cmd: str, cwd: Path | None = None) -> str:
    """The output of ``cmd``, which must succeed (else its error output is the assertion's message)."""
    run = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _copy_checkout(dst: Path) -> Path:
    """The checkout's files that git tracks or would (none it ignores: no build/, node_modules or caches), links as
    links, copied to ``dst``."""
    for name in filter(None, _ok("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                                 cwd=ROOT).split("\0")):
        if os.path.lexists(ROOT / name):  # not a file deleted from the work tree
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dst / name, follow_symlinks=False)
    return dst


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """A fresh venv with mcq's wheel installed (no dependencies: those come from this interpreter's site-packages,
    appended by a .pth file)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = _copy_checkout(tmp / "src")
    _ok(sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp / "dist"), ".", cwd=src)  # sdist, wheel
    [wheel] = (tmp / "dist").glob("mcq-*.whl")
    env = tmp / "venv"
    venv.create(env, symlinks=True)
    _ok(sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "--no-deps", "--no-index",
        "--quiet", str(wheel))
    [site] = (env / "lib").glob("python3.*/site-packages")
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "mcq-test-deps.pth").write_text("".join(f"{d}\n" for d in deps))
    (tmp / "work").mkdir()
    return Installed(env, site, tmp / "work")


def _run(installed: Installed, program: str, *argv: str) -> subprocess.CompletedProcess:
    """``program`` of the fresh venv (``mcq``, ``python``) run on ``argv`` in its own folder."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(installed.venv / "bin" / program), *argv], cwd=installed.work, env=environ,
                          capture_output=True, text=True, check=False)


def test_mcq_is_the_installed_package_with_its_data(installed):
    code = ("import json, mcq, mcq.apps.install as i, mcq.apps.web as w, mcq.profile.accuracy as a\n"
            "print(json.dumps([mcq.__file__, str(a.BASELINES), str(w.WEB_DIR), i.APPS_DIR and str(i.APPS_DIR)]))")
    run = _run(installed, "python", "-c", code)
    assert run.returncode == 0, run.stderr
    init, baselines, web, apps = json.loads(run.stdout)
    for path in (init, baselines, web):
        assert Path(path).resolve().is_relative_to(installed.site), path  # not the checkout's mcq/
    assert Path(baselines).is_file() and apps is None
    assert sorted(p.name for p in Path(web).iterdir()) == sorted(p.name for p in (ROOT / "apps" / "web").iterdir()
                                                                 if p.is_file() and not p.name.startswith("."))


def test_profile_shows_the_published_baselines(installed, trained_ckpt, synth_data):
    [paper] = [b for b in load_baselines() if (b["encoder"], b["head"]) == ("mci0", "fpn")]
    out = installed.work / "profile"
    run = _run(installed, "mcq", "profile", "--checkpoint", str(trained_ckpt), "--runtimes", "torch", "--precision",
               "fp32", "--runs", "1", "--warmup", "0", "--threads", "1", "--data", str(synth_data), "--out", str(out))
    assert run.returncode == 0, run.stderr
    [row] = [line for line in run.stdout.splitlines() if line.startswith("mci0+fpn")]
    assert f"{paper['value']:.1f}* mIoU" in row and "accuracy* published (paper)" in run.stdout
    [cell] = json.loads((out / "profile.json").read_text())["cells"]
    assert cell["accuracy"]["source"] == "published" and cell["accuracy"]["value"] == paper["value"]
    assert paper["source"] in (out / "report.md").read_text()


def test_export_app_installs_into_the_apps_dir_given(installed, trained_ckpt, synth_data, tmp_path):
    argv = ["export", "executorch", "--checkpoint", str(trained_ckpt), "--precision", "fp32", "--data",
            str(synth_data), "--out", str(tmp_path / "exports"), "--app", "android"]
    run = _run(installed, "mcq", *argv)
    assert run.returncode == 2 and run.stderr.strip() == ("mcq: error: --app android: mcq is installed, not run from "
                                                          "its source tree: give --apps-dir DIR, the apps/ folder of "
                                                          "a checkout")
    apps = tmp_path / "apps"
    shutil.copytree(ROOT / "apps" / "android", apps / "android", ignore=shutil.ignore_patterns("model.pte*"))
    run = _run(installed, "mcq", *argv, "--apps-dir", str(apps))
    assert run.returncode == 0, run.stderr
    model = apps / "android" / "app" / "src" / "main" / "assets" / "model.pte"
    assert f"android app: {model}, {model}.json" in run.stdout
    [artifact] = (tmp_path / "exports").glob("*.pte")
    assert model.read_bytes() == artifact.read_bytes()
    assert json.loads(Path(f"{model}.json").read_text()) == json.loads(Path(f"{artifact}.json").read_text())


def test_app_web_check_serves_the_page_from_the_package(installed, trained_ckpt, synth_data, tmp_path):
    [report] = export_checkpoint(trained_ckpt, ["onnx"], ["fp32"], out=tmp_path, data=synth_data, n_images=2)
    model, photo = Path(report["path"]), min((synth_data / "images" / "validation").iterdir())
    web = installed.site / "mcq" / "apps" / "webapp"
    run = _run(installed, "mcq", "app", "web", "--model", str(model), "--check", str(photo))
    assert run.returncode == 2 and run.stderr.strip() == (f"mcq: error: {web / 'node_modules'}: onnxruntime-web is "
                                                          f"not installed; run `npm ci --prefix {web}`")
    if not (WEB_DIR / ORT).is_file():
        web_app_absent("onnxruntime-web is not installed: run `npm ci --prefix apps/web`")
    if browser_missing():
        web_app_absent(browser_missing())
    (web / "node_modules").symlink_to(WEB_DIR / "node_modules")  # what `npm ci --prefix` there would install
    run = _run(installed, "mcq", "app", "web", "--model", str(model), "--check", str(photo))
    assert run.returncode == 0, run.stderr
    assert "of pixels agree with onnxruntime in Python" in run.stdout and "ms per image (wasm" in run.stdout
