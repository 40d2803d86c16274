"""``check_in_browser``: the web app on one model and one image in headless Chromium, against onnxruntime in Python.

Chromium is Debian's (``apt-get install chromium``), driven by Playwright, which downloads no browser of its own.
"""

from __future__ import annotations

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
from mcq.export import onnx as onnx_format
from mcq.export.schema import read_sidecar

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MIN_AGREEMENT = 0.999  # seg: share of pixels whose class matches onnxruntime in Python
MAX_REL = 1e-3  # depth: largest relative error against onnxruntime in Python


@contextmanager
def headless_chromium(executable: str = CHROMIUM) -> Iterator:
    """A Playwright ``Browser`` on the system's Chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise McqError("playwright is not installed (pip install -e '.[dev]')") from e
    if not Path(executable).is_file():
        raise McqError(f"{executable}: chromium is not installed (apt-get install -y chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
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
    output = onnx_format.runner(model)(preprocess(Image.open(io.BytesIO(data)), meta))
    if meta["task"] == "seg":
        expected, mask = postprocess(output), np.array(result["mask"], np.uint8).reshape(result["shape"])
        agreement = float((mask == expected).mean())
        return {**result, "mask": mask, "expected": expected, "agreement": agreement,
                "passed": agreement >= MIN_AGREEMENT}
    expected, depth = output[0, 0], np.array(result["depth"], np.float32).reshape(result["shape"])
    rel = np.abs(depth - expected) / np.maximum(np.abs(expected), 1e-6)
    return {**result, "depth": depth, "expected": expected, "mean_rel": float(rel.mean()), "max_rel": float(rel.max()),
            "passed": float(rel.max()) <= MAX_REL}


@contextmanager
def _given(browser) -> Iterator:
    yield browser
