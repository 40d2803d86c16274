"""The web app (apps/web): served by ``mcq app web`` with the isolation headers WASM threads need, run in headless
Chromium on onnxruntime-web; its mask (seg) and depth map (depth) agree with onnxruntime in Python, its JS
pre/post-processing and depth colour map with mcq's reference vector; ``mcq profile --runtimes web`` times it."""

import io
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import web_app_absent
from mcq.apps.browser import CHROMIUM, MAX_REL, check_in_browser, headless_chromium, open_page
from mcq.apps.reference import DEPTH_RAMP, colour_depth, postprocess, preprocess, reference_vector, write_reference
from mcq.apps.web import ORT, WEB_DIR, serve_web_app
from mcq.cli import main
from mcq.errors import McqError
from mcq.export.exporter import export_checkpoint
from mcq.tasks.schema import read_sidecar

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def npm_deps() -> None:
    if not (WEB_DIR / ORT).is_file():
        web_app_absent("onnxruntime-web is not installed: run `npm ci --prefix apps/web`")


def _onnx_fp32(checkpoint: Path, data: Path, out: Path, outputs: str = "logits") -> Path:
    [report] = export_checkpoint(checkpoint, ["onnx"], ["fp32"], out=out, data=data, n_images=2, outputs=outputs)
    assert report["status"] == "ok", report.get("why")
    return out / report["artifact"]


@pytest.fixture(scope="module")
def artifact(trained_ckpt, synth_data, tmp_path_factory) -> Path:
    """The tiny seg model exported to ONNX fp32 (64 px, 8 classes), with its sidecar."""
    return _onnx_fp32(trained_ckpt, synth_data, tmp_path_factory.mktemp("web-model"))


@pytest.fixture(scope="module")
def labels_artifact(trained_ckpt, synth_data, tmp_path_factory) -> Path:
    """The tiny seg model exported with labels outputs (`--outputs labels`: uint8 class indices [1, 64, 64])."""
    return _onnx_fp32(trained_ckpt, synth_data, tmp_path_factory.mktemp("web-labels"), "labels")


@pytest.fixture(scope="module")
def depth_artifact(trained_depth_ckpt, synth_depth_data, tmp_path_factory) -> Path:
    """The tiny depth model exported to ONNX fp32, with its sidecar."""
    return _onnx_fp32(trained_depth_ckpt, synth_depth_data, tmp_path_factory.mktemp("web-depth"))


@pytest.fixture
def app(artifact):
    served = serve_web_app(artifact, port=0)
    yield served
    served.close()


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.headers, r.read()


def test_serves_page_model_and_runtime_cross_origin_isolated(npm_deps, app, artifact):
    base = app.url.split("/?")[0]
    assert app.url.startswith("http://127.0.0.1:") and f"?model=/model/{artifact.name}" in app.url
    for path, kind in (("/", "text/html"), ("/app.js", "text/javascript"), (f"/{ORT.as_posix()}", "text/javascript"),
                       ("/node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm", "application/wasm"),
                       (f"/model/{artifact.name}", "application/octet-stream")):
        headers, _ = _get(base + path)
        assert headers["Content-Type"].startswith(kind), path
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin", path
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp", path
    _, body = _get(f"{base}/model/{artifact.name}.json")
    assert json.loads(body) == read_sidecar(artifact)
    with pytest.raises(urllib.error.HTTPError, match="404"):
        _get(f"{base}/model/other.onnx")  # only the model it was started on


def test_refuses_what_it_cannot_serve_in_one_line(artifact, tmp_path):
    bare = Path(shutil.copytree(WEB_DIR, tmp_path / "web", ignore=shutil.ignore_patterns("node_modules")))
    with pytest.raises(McqError, match=r"onnxruntime-web is not installed; run `npm ci --prefix .*web`$"):
        serve_web_app(artifact, port=0, web_dir=bare)
    (tmp_path / "m.pte").write_bytes(b"")
    with pytest.raises(McqError, match=r"m.pte: the web app runs .onnx artifacts"):
        serve_web_app(tmp_path / "m.pte", port=0)
    shutil.copy(artifact, tmp_path / "m.onnx")
    with pytest.raises(McqError, match=r"m.onnx: its metadata m.onnx.json is missing"):
        serve_web_app(tmp_path / "m.onnx", port=0)
    meta = read_sidecar(artifact)
    (tmp_path / "m.onnx.json").write_text(json.dumps({**meta, "task": "depth"}))
    with pytest.raises(McqError, match=r"m.onnx.json: metadata breaks mcq's schema"):
        serve_web_app(tmp_path / "m.onnx", port=0)
    cls = {**meta, "task": "cls", "head": "linear", "output": {**meta["output"], "shape": [1, 8]}}
    (tmp_path / "m.onnx.json").write_text(json.dumps(cls))
    with pytest.raises(McqError, match=r"m.onnx: a cls model; the web app shows segmentation and depth models$"):
        serve_web_app(tmp_path / "m.onnx", port=0)


def test_cli_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["app", "web", "--help"])
    out = capsys.readouterr().out
    assert "mcq app web --model exports/" in out and "npm ci --prefix apps/web" in out


def test_reference_vector_is_mcqs_processing(artifact, tmp_path):
    meta = read_sidecar(artifact)
    path = write_reference(meta, tmp_path / "ref.json", seed=1)
    ref = json.loads(path.read_text())
    assert ref == json.loads(json.dumps(reference_vector(meta, seed=1)))
    image = ref["image"]
    pixels = np.array(image["rgb"], np.uint8).reshape(image["height"], image["width"], 3)
    tensor = np.array(ref["tensor"]["data"], np.float32).reshape(ref["tensor"]["shape"])
    assert tensor.shape == (1, 3, 64, 64) and np.array_equal(tensor, preprocess(Image.fromarray(pixels), meta))
    logits = np.array(ref["logits"]["data"], np.float32).reshape(ref["logits"]["shape"])
    mask = np.array(ref["mask"]["data"]).reshape(ref["mask"]["shape"])
    assert np.array_equal(mask, postprocess(logits)) and (np.sort(logits[0], 0)[-1] == np.sort(logits[0], 0)[-2]).any()
    depth = ref["depth"]
    assert depth["min"] == min(depth["data"]) and depth["max"] == max(depth["data"])
    rgb = np.array(depth["rgb"]).reshape(-1, 3)
    assert rgb[np.argmin(depth["data"])].tolist() == list(DEPTH_RAMP[0])  # near: the ramp's first colour
    assert rgb[np.argmax(depth["data"])].tolist() == list(DEPTH_RAMP[-1])


def test_depth_colour_map_interpolates_the_ramp():
    d = np.array([0.0, 0.5, 1.0, 2.0, 3.0], np.float32)  # below, at and above the range [1, 2]
    rgb = colour_depth(d, 1.0, 2.0)
    assert rgb[:3].tolist() == [list(DEPTH_RAMP[0])] * 3 and rgb[3:].tolist() == [list(DEPTH_RAMP[-1])] * 2
    mid = colour_depth(np.array([1.0625]), 1.0, 2.0)[0]  # half-way between the first two anchors
    assert mid.tolist() == [165, 26, 4] and colour_depth(d, 2.0, 2.0).tolist() == [list(DEPTH_RAMP[0])] * 5


@pytest.fixture
def browser():
    if not Path(CHROMIUM).is_file():
        web_app_absent("chromium is not installed (apt-get install -y chromium)")
    try:
        with headless_chromium() as b:
            yield b
    except McqError as e:  # playwright missing
        web_app_absent(str(e))


def _photo(synth_data: Path) -> bytes:
    """A validation image of the synthetic data, stretched to 96x72 (the page resizes it to 64x64), as PNG."""
    path = sorted((synth_data / "images" / "validation").iterdir())[0]
    buf = io.BytesIO()
    Image.open(path).convert("RGB").resize((96, 72), Image.BILINEAR).save(buf, format="PNG")
    return buf.getvalue()


def test_browser_segments_like_onnxruntime_and_processes_like_mcq(npm_deps, browser, app, artifact, synth_data, tmp_path):
    png = _photo(synth_data)
    result = check_in_browser(artifact, png, tmp_path / "web_app.png", browser=browser)
    assert (tmp_path / "web_app.png").stat().st_size > 1000
    print(f"browser vs onnxruntime: {result['agreement']:.4%} of pixels agree; {result['timeMs']:.1f} ms per image on "
          f"{result['backend']} ({result['threads']} threads; first run {result['firstRunMs']:.1f} ms)")
    assert result["shape"] == [64, 64] and result["agreement"] >= 0.999
    assert result["crossOriginIsolated"] and result["backend"] == "wasm" and result["timeMs"] > 0
    meta = read_sidecar(artifact)
    names = [c["name"] for c in result["classes"]]
    assert sorted(names) == sorted(meta["class_names"][i] for i in np.unique(result["expected"]))
    page = open_page(browser, app.url, png)
    assert page.locator("#legend li").all_inner_texts()[0].startswith(names[0])

    ref = reference_vector(meta, seed=2)
    image = ref["image"]
    tensor = np.array(page.evaluate("([p, w, h, m]) => window.mcqPreprocess(p, w, h, m, 3)",
                                    [image["rgb"], image["width"], image["height"], meta]), np.float32)
    want = np.array(ref["tensor"]["data"], np.float32)
    one_level = 1 / 255 / min(meta["input"]["std"])  # torchvision's uint8 resize rounds a few values the other way
    diff = np.abs(tensor - want)
    assert tensor.shape == want.shape and diff.max() <= one_level + 1e-5 and (diff < 1e-5).mean() >= 0.99
    got = page.evaluate("([l, d]) => window.mcqArgmax(l, d)", [ref["logits"]["data"], ref["logits"]["shape"]])
    assert got == ref["mask"]["data"]


def test_browser_shows_a_labels_models_classes_as_they_come(npm_deps, browser, artifact, labels_artifact, synth_data):
    png = _photo(synth_data)
    labels = check_in_browser(labels_artifact, png, browser=browser)
    assert labels["passed"] and labels["shape"] == [64, 64]
    logits = check_in_browser(artifact, png, browser=browser)  # the same model: its argmax in the page
    assert labels["mask"].tolist() == logits["mask"].tolist() and labels["classes"] == logits["classes"]
    app = serve_web_app(labels_artifact, port=0)
    try:
        page = open_page(browser, app.url, png)
        meta = read_sidecar(labels_artifact)
        assert page.evaluate("([d, o]) => window.mcqClassMask(d, [1, 2, 2], o)", [[3, 0, 7, 1], meta["output"]]) == \
            [3, 0, 7, 1]
        logit_output = {"name": "logits", "dtype": "float32"}
        assert page.evaluate("([d, o]) => window.mcqClassMask(d, [1, 2, 1, 2], o)", [[0, 5, 1, 2], logit_output]) == \
            [1, 0]
    finally:
        app.close()


def _depth_photo(synth_depth_data: Path) -> bytes:
    """A test frame of the synthetic depth data as PNG, at 80x60 (the page stretches it to the input size)."""
    path = sorted(synth_depth_data.rglob("rgb_*.jpg"))[-1]
    buf = io.BytesIO()
    Image.open(path).convert("RGB").resize((80, 60), Image.BILINEAR).save(buf, format="PNG")
    return buf.getvalue()


def test_browser_maps_depth_like_onnxruntime(npm_deps, browser, depth_artifact, synth_depth_data, tmp_path):
    png = _depth_photo(synth_depth_data)
    result = check_in_browser(depth_artifact, png, tmp_path / "depth.png", browser=browser)
    meta = read_sidecar(depth_artifact)
    print(f"browser vs onnxruntime: depth within {result['max_rel']:.2e} relative (mean {result['mean_rel']:.2e}); "
          f"{result['min']:.3f}-{result['max']:.3f} m; {result['timeMs']:.1f} ms on {result['backend']}")
    assert result["passed"] and result["max_rel"] <= MAX_REL and result["shape"] == meta["output"]["shape"][-2:]
    assert result["units"] == "metres" and result["min"] == pytest.approx(float(result["expected"].min()), rel=1e-3)
    assert result["max"] == pytest.approx(float(result["expected"].max()), rel=1e-3) and result["max"] > result["min"]
    assert "mask" not in result and (tmp_path / "depth.png").stat().st_size > 1000

    app = serve_web_app(depth_artifact, port=0)
    try:
        page = open_page(browser, app.url, png)
        assert page.locator("#depth-legend").is_visible() and not page.locator("#legend li").count()
        assert page.locator("#depth-min").inner_text() == f"{result['min']:.2f} m"
        assert page.locator("#depth-max").inner_text() == f"{result['max']:.2f} m"
        assert "depth in metres up to" in page.locator("#model-info").inner_text()
        ref = reference_vector(meta, seed=3)["depth"]
        got = np.array(page.evaluate("([d, lo, hi]) => window.mcqColourDepth(d, lo, hi)",
                                     [ref["data"], ref["min"], ref["max"]])).reshape(-1, 4)
        want = np.array(ref["rgb"]).reshape(-1, 3)
        assert (got[:, 3] == 255).all() and np.abs(got[:, :3] - want).max() <= 1  # float64 here, float32 in mcq
        assert (got[:, :3] == want).mean() >= 0.99
    finally:
        app.close()


@pytest.mark.parametrize("task", ["seg", "depth"])
def test_cli_check_runs_the_page_headless(task, npm_deps, request, tmp_path, capsys):
    if not Path(CHROMIUM).is_file():
        web_app_absent("chromium is not installed (apt-get install -y chromium)")
    model, data, photo_of, says = {
        "seg": ("artifact", "synth_data", _photo, "of pixels agree with onnxruntime in Python"),
        "depth": ("depth_artifact", "synth_depth_data", _depth_photo, "relative (mean "),
    }[task]
    photo = tmp_path / "photo.png"
    photo.write_bytes(photo_of(request.getfixturevalue(data)))
    model = request.getfixturevalue(model)
    rc = main(["app", "web", "--model", str(model), "--check", str(photo), "--screenshot", str(tmp_path / "p.png")])
    out = capsys.readouterr().out
    assert rc == 0 and says in out and "ms per image (wasm" in out
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_profile_times_the_browser_beside_onnxruntime(trained_ckpt, synth_data, tmp_path, capsys):
    """`mcq profile --runtimes onnxruntime,web`: one run prints onnxruntime's row and the browser's (WASM, with the
    thread count asked for; WebGPU ran or says why it cannot run here), with the same columns."""
    from mcq.profile.web import web_unavailable

    missing = web_unavailable("seg")
    if missing:
        web_app_absent(missing[1])
    rc = main(["profile", "--checkpoint", str(trained_ckpt), "--runtimes", "onnxruntime,web", "--precision", "fp32",
               "--runs", "3", "--warmup", "1", "--threads", "2", "--data", str(synth_data), "--parity-images", "1",
               "--out", str(tmp_path)])
    text = capsys.readouterr().out
    cells = {c["backend"] if c["runtime"] == "web" else c["runtime"]: c
             for c in json.loads((tmp_path / "profile.json").read_text())["cells"]}
    assert rc == 0 and list(cells) == ["onnxruntime", "wasm", "webgpu"]
    wasm = cells["wasm"]
    assert wasm["status"] == "ran" and wasm["threads"] == 2 and len(wasm["runs_ms"]) == 3, wasm
    assert 0 < wasm["min_ms"] <= wasm["median_ms"] <= wasm["p90_ms"] and "peak_mem_mb" not in wasm
    assert wasm["load_ms"] > 0 and wasm["first_run_ms"] > 0 and wasm["pre_ms"] > 0 and wasm["post_ms"] > 0
    assert wasm["artifact"] == cells["onnxruntime"]["artifact"] and wasm["size_mb"] == cells["onnxruntime"]["size_mb"]
    webgpu = cells["webgpu"]
    assert webgpu["status"] == "ran" or (webgpu["status"] == "cannot run here" and "adapter" in webgpu["why"]), webgpu
    rows = {line.split()[2]: line for line in text.splitlines() if line.startswith("mci0+fpn")}
    assert list(rows) == ["onnxruntime", "web/wasm", "web/webgpu"]
    assert f"{wasm['median_ms']:.1f}" in rows["web/wasm"] and rows["web/wasm"].rstrip().endswith("ran (2 threads)")
    assert "web: onnxruntime-web in headless Chromium" in text


def test_profile_web_cells_say_why_they_cannot_run(monkeypatch, trained_ckpt, synth_data, tmp_path):
    """Without chromium each web cell is "cannot run here" with the one-line reason, and nothing is exported for it;
    a task the app does not show is "not supported"."""
    from mcq.apps import browser
    from mcq.profile import ProfileConfig, profile
    from mcq.profile.web import web_unavailable

    monkeypatch.setattr(browser, "CHROMIUM", str(tmp_path / "no-chromium"))
    prof = profile(ProfileConfig(checkpoints=[str(trained_ckpt)], runtimes=["web"], precisions=["fp32"], runs=1,
                                 warmup=0, data=str(synth_data), out=str(tmp_path / "p")))
    why = f"{tmp_path / 'no-chromium'}: chromium is not installed (apt-get install -y chromium)"
    assert [(c["backend"], c["status"], c["why"]) for c in prof["cells"]] == [
        ("wasm", "cannot run here", why), ("webgpu", "cannot run here", why)]
    assert not list((tmp_path / "p" / "artifacts").glob("*.onnx"))
    assert web_unavailable("det") == ("not supported", "the web app shows seg and depth models, not det")
