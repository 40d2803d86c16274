"""``mcq app web|reference``: serve (or check) the web app on an exported model; an app's reference vector."""

from __future__ import annotations

import argparse

from mcq.apps.browser import MAX_REL, MIN_AGREEMENT
from mcq.cli.common import add_command, add_group

EXAMPLES = (
    "examples:\n"
    "  npm ci --prefix apps/web                                   # once: onnxruntime-web, pinned (in a checkout)\n"
    "  mcq app web --model exports/mci0_fpn_512_fp32.onnx --port 8000   # then open the URL it prints\n"
    "  mcq app web --model exports/mci0_fpn_512_fp32.onnx --check photo.jpg --screenshot page.png  # headless\n"
    "  mcq app reference --model exports/mci0_fpn_512_fp16.mlpackage \\\n"
    "      --out apps/ios/McqSegmentTests/reference.json        # what the app's processing test checks against"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    app = add_group(subparsers, "app", "sample apps")
    web = add_command(app, "web", "serve the web app (apps/web) on an exported segmentation or depth model, run in "
                      "the browser by onnxruntime-web", EXAMPLES)
    web.add_argument("--model", required=True, help="an exported seg or depth .onnx (its .json metadata beside it)")
    web.add_argument("--port", type=int, default=8000, help="port on localhost (default %(default)s; 0: any free port)")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    web.add_argument("--check", metavar="IMAGE", help="instead of serving: run the page on IMAGE in headless Chromium, "
                     "print its agreement with onnxruntime in Python and its time; exit 1 below "
                     f"{100 * MIN_AGREEMENT:g}%% of pixels (seg) or beyond {MAX_REL:g} relative error (depth)")
    web.add_argument("--screenshot", metavar="PNG", help="with --check: a screenshot of the page")
    ref = add_command(app, "reference", "write the reference vector an app checks its pre- and post-processing "
                      "against", EXAMPLES)
    ref.add_argument("--model", required=True, help="an exported artifact (its .json metadata beside it)")
    ref.add_argument("--out", required=True, help="JSON file to write")
    ref.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int | None:
    if args.app_command == "reference":
        from mcq.apps.reference import write_reference
        from mcq.tasks.schema import read_sidecar

        path = write_reference(read_sidecar(args.model), args.out, args.seed)
        print(f"reference vector of {args.model} written to {path}")
        return 0
    if args.check:
        from mcq.apps.browser import check_in_browser, format_check

        r = check_in_browser(args.model, args.check, args.screenshot)
        print(format_check(args.model, args.check, r, args.screenshot))
        return 0 if r["passed"] else 1
    from mcq.apps.web import serve_web_app

    app = serve_web_app(args.model, args.port, args.host, image="sample.jpg")
    print(f"serving {args.model} at {app.url}  (Ctrl-C stops)", flush=True)
    try:
        app.thread.join()
    finally:
        app.close()
