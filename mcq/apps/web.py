"""``serve_web_app``: the web app (``apps/web``) and one exported model on a local HTTP server.

The app's files are package data: ``mcq/apps/webapp`` is a link to ``apps/web`` in the source tree and a folder of
the installed package. onnxruntime-web comes from npm into ``node_modules`` there (``npm ci --prefix`` that folder,
``make setup`` in a checkout); it does not ship in the wheel.

The page runs the model in the browser with onnxruntime-web; its WASM threads need a cross-origin isolated page,
hence the ``Cross-Origin-Opener-Policy`` and ``Cross-Origin-Embedder-Policy`` headers on every response.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from mcq.errors import McqError
from mcq.tasks.schema import read_sidecar

WEB_DIR = (Path(__file__).parent / "webapp").resolve()  # apps/web in a checkout
ORT = Path("node_modules") / "onnxruntime-web" / "dist" / "ort.wasm.min.mjs"  # ort.webgpu.min.mjs beside it
WEB_TASKS = ("seg", "depth")  # apps/web/mcq.js TASKS
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
             "Cross-Origin-Resource-Policy": "same-origin"}


@dataclass
class WebApp:
    """A running server: ``url`` opens the page on the model; ``close()`` stops it."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    url: str
    model_url: str

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _Handler(SimpleHTTPRequestHandler):
    """Static files of the app, plus the model and its sidecar under ``/model/``; isolation headers everywhere."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                      ".mjs": "text/javascript", ".wasm": "application/wasm", ".onnx": "application/octet-stream",
                      ".json": "application/json"}

    def __init__(self, *args, model: Path, **kwargs):
        self.model = model
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        name = unquote(urlsplit(path).path)
        if name in (f"/model/{self.model.name}", f"/model/{self.model.name}.json"):
            return str(self.model.parent / name.removeprefix("/model/"))
        return super().translate_path(path)

    def end_headers(self) -> None:
        for k, v in ISOLATION.items():
            self.send_header(k, v)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: the CLI prints the URL; errors reach the page


def runtime_missing(web_dir: str | Path = WEB_DIR) -> str | None:
    """Why the page has no onnxruntime-web to load (``npm ci`` not run in ``web_dir``), or None."""
    web_dir = Path(web_dir)
    if not (web_dir / ORT).is_file():
        return f"{web_dir / 'node_modules'}: onnxruntime-web is not installed; run `npm ci --prefix {web_dir}`"
    return None


def check_web_model(model: str | Path) -> dict:
    """The metadata of ``model`` if the web app can run it (an ONNX seg or depth artifact with a valid sidecar)."""
    model = Path(model)
    if model.suffix != ".onnx":
        raise McqError(f"{model}: the web app runs .onnx artifacts (export one with `mcq export onnx`)")
    if not model.is_file():
        raise McqError(f"{model}: no such model file")
    meta = read_sidecar(model)
    if meta["task"] not in WEB_TASKS:
        raise McqError(f"{model}: a {meta['task']} model; the web app shows segmentation and depth models")
    return meta


def serve_web_app(model: str | Path, port: int = 8000, host: str = "127.0.0.1",
                  web_dir: str | Path = WEB_DIR, image: str | None = None) -> WebApp:
    """Serve ``web_dir`` (the page) and ``model`` (an exported ``.onnx`` and its ``.json`` sidecar) on
    ``host:port`` (0: a free port) in a background thread; the returned ``url`` opens the page on the model
    (and on ``image``, a URL, when given)."""
    model, web_dir = Path(model).resolve(), Path(web_dir)
    check_web_model(model)
    if not (web_dir / "index.html").is_file():
        raise McqError(f"{web_dir}: the web app is not there (mcq's package data, apps/web in its source tree)")
    missing = runtime_missing(web_dir)
    if missing:
        raise McqError(missing)
    handler = functools.partial(_Handler, directory=str(web_dir), model=model)
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise McqError(f"cannot serve on {host}:{port}: {e.strerror}; pick another --port") from e
    thread = threading.Thread(target=server.serve_forever, name="mcq-web-app", daemon=True)
    thread.start()
    base = f"http://{host}:{server.server_address[1]}"
    model_url = f"/model/{quote(model.name)}"
    url = f"{base}/?model={model_url}" + (f"&image={quote(image)}" if image else "")
    return WebApp(server, thread, url, base + model_url)
