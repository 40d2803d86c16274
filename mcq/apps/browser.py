"""``check_in_browser``: the web app on one model and one image in headless Chromium, against onnxruntime in Python;
``benchmark_in_browser``: the same page timed (``mcq profile --runtimes web``).

Chromium is Debian's (``apt-get install chromium``), driven by Playwright, which downloads no browser of its own.
"""

from __future__ import annotations

import importlib.util
import io
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from mcq.apps.reference import postprocess, preprocess
from mcq.apps.web import serve_web_app
from mcq.errors import McqError
from mcq.runtime.backends import runner
from mcq.tasks.schema import read_sidecar

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MIN_AGREEMENT = 0.999  # seg: share of pixels whose class matches onnxruntime in Python
MAX_REL = 1e-3  # depth: largest relative error against onnxruntime in Python
WEBGPU = ("--enable-unsafe-webgpu",)  # Chromium on Linux offers WebGPU only with it (where there is a GPU adapter)
BENCHMARK_LOAD_S = 600  # the page's load and first two runs when profiling (Swin-L at 640 px: minutes in WASM)


def browser_missing(executable: str | None = None) -> str | None:
    """Why headless Chromium (``executable``, default ``CHROMIUM``) cannot be driven here (no playwright, no
    chromium), or None."""
    executable = executable or CHROMIUM
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not Path(executable).is_file():
        return f"{executable}: chromium is not installed (apt-get install -y chromium)"
    return None


@contextmanager
def headless_chromium(executable: str | None = None, args: tuple[str, ...] = ()) -> Iterator:
    """A Playwright ``Browser`` on the system's Chromium (``executable``, default ``CHROMIUM``; ``args``: more
    command-line flags)."""
    executable = executable or CHROMIUM
    why = browser_missing(executable)
    if why:
        raise McqError(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox", *args])
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, app_url: str, image: bytes, timeout_s: float = 120):
    """A page of the app at ``app_url`` on ``image`` (PNG or JPEG bytes, served as ``/photo``), once it is done."""
    page = browser.new_page()
    page.route(lambda url: urlsplit(url).path == "/photo",
               lambda route: route.fulfill(body=image, content_type=Image.open(io.BytesIO(image)).get_format_mimetype(),
                                           headers={"Cross-Origin-Resource-Policy": "same-origin"}))
    page.goto(f"{app_url}&image=/photo")
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.status)", timeout=timeout_s * 1000)
    if page.evaluate("document.body.dataset.status") != "done":
        raise McqError(f"the web app failed: {page.evaluate('window.mcqError')}")
    return page


def check_in_browser(model: str | Path, image: str | Path | bytes, screenshot: str | Path | None = None,
                     browser=None) -> dict:
    """Run the web app on ``model`` (an exported ``.onnx`` seg or depth artifact) and ``image`` in headless Chromium;
    return the page's ``window.mcqResult`` compared with onnxruntime in Python on the same image, preprocessed as the
    sidecar says: seg adds ``agreement`` (share of pixels whose class matches) and ``expected`` (the mask), depth
    ``mean_rel`` and ``max_rel`` (relative error of the depth) and ``expected`` (the depth map); ``passed`` says
    whether they are within ``MIN_AGREEMENT`` / ``MAX_REL``. ``screenshot``: a PNG of the page to write."""
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    meta = read_sidecar(model)
    app = serve_web_app(model, port=0)
    try:
        with (headless_chromium() if browser is None else _given(browser)) as b:
            page = open_page(b, app.url, data)
            result = page.evaluate("window.mcqResult")
            if screenshot:
                page.screenshot(path=str(screenshot))
            page.close()
    finally:
        app.close()
    output = runner("onnx", model)(preprocess(Image.open(io.BytesIO(data)), meta))
    if "mask" in result:  # the app drew a class map (seg), else a depth map
        expected, mask = postprocess(output), np.array(result["mask"], np.uint8).reshape(result["shape"])
        agreement = float((mask == expected).mean())
        return {**result, "mask": mask, "expected": expected, "agreement": agreement,
                "passed": agreement >= MIN_AGREEMENT}
    expected, depth = output[0, 0], np.array(result["depth"], np.float32).reshape(result["shape"])
    rel = np.abs(depth - expected) / np.maximum(np.abs(expected), 1e-6)
    return {**result, "depth": depth, "expected": expected, "mean_rel": float(rel.mean()), "max_rel": float(rel.max()),
            "passed": float(rel.max()) <= MAX_REL}



def format_check(model: str | Path, image: str | Path, result: dict, screenshot: str | Path | None = None) -> str:
    """``check_in_browser``'s ``result`` in one line: agreement with onnxruntime in Python, time, backend."""
    r = result
    versus = (f"{r['agreement']:.4%} of pixels agree with onnxruntime in Python" if "agreement" in r else
              f"depth within {r['max_rel']:.2e} relative (mean {r['mean_rel']:.2e}) of onnxruntime in Python")
    return (f"{model} on {image} in headless Chromium: {versus}; {r['timeMs']:.1f} ms per image "
            f"({r['backend']}, {r['threads']} threads; first run {r['firstRunMs']:.1f} ms)"
            + (f"; screenshot {screenshot}" if screenshot else ""))

@contextmanager
def _given(browser) -> Iterator:
    yield browser


def benchmark_in_browser(model: str | Path, image: bytes, runs: int, warmup: int, threads: int,
                         backend: str = "wasm") -> dict:
    """Time the web app on ``model`` (an exported seg or depth ``.onnx``) and ``image`` in headless Chromium, in real
    time, on ``backend`` (``wasm`` or ``webgpu``) with ``threads`` WASM threads: the page's ``window.mcqBenchmark``
    (``runsMs``, ``preMs``, ``postMs``, ``loadMs``, ``threads``, ``backend``) and ``firstRunMs``. Where WebGPU cannot
    run, ``{"unavailable": why}`` instead."""
    app = serve_web_app(model, port=0)
    try:
        with headless_chromium(args=WEBGPU) as browser:
            if backend == "webgpu":
                probe = browser.new_page()
                probe.goto(app.url.split("?")[0])
                probe.wait_for_function("window.mcqWebgpuMissing !== undefined")
                why = probe.evaluate("window.mcqWebgpuMissing()")
                if why:
                    return {"unavailable": why}
            page = open_page(browser, f"{app.url}&ep={backend}&threads={threads}", image, BENCHMARK_LOAD_S)
            first = page.evaluate("window.mcqResult.firstRunMs")
            return {**page.evaluate("([r, w]) => window.mcqBenchmark(r, w)", [runs, warmup]), "firstRunMs": first}
    finally:
        app.close()
