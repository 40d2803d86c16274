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
    """Run the web app on ``model`` (an exported ``.onnx`` segmentation artifact) and ``image`` in headless Chromium;
    return the page's ``window.mcqResult`` with ``agreement``: the share of pixels whose class matches onnxruntime in
    Python on the same image, preprocessed as the sidecar says. ``screenshot``: a PNG of the page to write."""
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
    expected = postprocess(onnx_format.runner(model)(preprocess(Image.open(io.BytesIO(data)), meta)))
    mask = np.array(result["mask"], np.uint8).reshape(result["shape"])
    return {**result, "agreement": float((mask == expected).mean()), "expected": expected, "mask": mask}


@contextmanager
def _given(browser) -> Iterator:
    yield browser
