"""The ``web`` runtime of ``mcq profile``: the ONNX artifact in the web app (``apps/web``, onnxruntime-web), in
headless Chromium, timed by the page itself in real time (``performance.now()``, not a virtual time budget).

A cell per backend: ``web/wasm`` (WASM with ``--threads`` threads; the page is served cross-origin isolated, which
WASM threads need; ``threads`` in the cell is onnxruntime-web's own count after the session is created) and
``web/webgpu`` ("cannot run here", with the reason, where Chromium has no hardware GPU adapter). The figures
match the other runtimes' where they can: latency is ``session.run`` on the model's input alone; load is the model
fetched from the local server and its session created (on a fresh page that includes the WASM's instantiation);
pre- and post-processing are the page's own JavaScript on the profile's image (resize + normalise; the class mask
or the depth range and their colours at the model's size, which the canvas scales to the image). Peak memory is
not measured: the model runs in the browser's processes, not in mcq's.
"""

from __future__ import annotations

import io
import statistics
from pathlib import Path

from PIL import Image

from mcq.errors import failure
from mcq.profile.config import CellStatus, ProfileConfig
from mcq.profile.measure import summarize


BACKENDS = ("wasm", "webgpu")


def web_unavailable(task: str) -> tuple[str, str] | None:
    """(status, why) where no web cell can run: a task the app does not show, or no browser or onnxruntime-web."""
    from mcq.apps.browser import browser_missing
    from mcq.apps.web import WEB_TASKS, runtime_missing

    if task not in WEB_TASKS:
        return CellStatus.NOT_SUPPORTED, f"the web app shows {' and '.join(WEB_TASKS)} models, not {task}"
    why = browser_missing() or runtime_missing()
    return (CellStatus.CANNOT_RUN, why) if why else None


def measure_in_browser(path: Path, image: Image.Image, cfg: ProfileConfig, backend: str) -> dict:
    """The figures of a web cell on ``backend``: ``status`` and load, first run, latency, pre and post (ms) and the
    WASM ``threads``; "cannot run here" where the backend has no adapter, "failed" where the page breaks."""
    from mcq.apps.browser import benchmark_in_browser

    png = io.BytesIO()
    image.convert("RGB").save(png, format="PNG")
    try:
        got = benchmark_in_browser(path, png.getvalue(), cfg.runs, cfg.warmup, cfg.threads, backend)
    except Exception as e:  # noqa: BLE001 - a browser that breaks is a failed cell, not a failed profile
        found = failure(e)
        return {"status": CellStatus.FAILED, **found, "why": f"web: {found['why']}"}
    if "unavailable" in got:
        return {"status": CellStatus.CANNOT_RUN, "why": got["unavailable"]}
    return {"status": CellStatus.RAN, "load_ms": got["loadMs"], "first_run_ms": got["firstRunMs"],
            "threads": got["threads"],
            "pre_ms": statistics.median(got["preMs"]), "post_ms": statistics.median(got["postMs"]),
            **summarize(got["runsMs"])}
