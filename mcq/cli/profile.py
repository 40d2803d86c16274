"""``mcq profile``: latency, memory, size, FLOPs and accuracy of every model x runtime x precision;
``mcq profile compare``: two profiles, as a regression gate."""

from __future__ import annotations

import argparse
import sys

from mcq.cli.common import add_command, print_tracebacks
from mcq.export.labels import OUTPUTS
from mcq.profile.config import DEFAULT_MODELS, ProfileConfig

EXAMPLES = (
    "examples:\n"
    "  mcq profile --models mci0,mci2,swin_l --runtimes torch,onnxruntime,executorch --threads 4 "
    "--out profiles/laptop\n"
    "  mcq profile --models mci0 --img-size 256 512 --precision fp32,int8 --runs 50   # resolution as a third axis\n"
    "  mcq profile --checkpoint runs/seg-mci0/checkpoints/best.ckpt --accuracy val.json onnx_int8_val.json\n"
    "  mcq profile --checkpoint runs/det-mci0/checkpoints/best.ckpt --precision fp32   # Mask R-CNN: graph per cell\n"
    "  mcq profile --models mci0 --runtimes executorch,onnxruntime --precision fp32 --per-op   # where the time goes\n"
    "  mcq profile --models mci0 --runtimes onnxruntime,web --precision fp32   # the browser (onnxruntime-web)\n"
    "  mcq profile compare profiles/laptop profiles/ci --fail-on latency+10%,miou-0.5   # a regression gate"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    c = ProfileConfig()
    p = add_command(subparsers, "profile", "latency, memory, size, FLOPs and accuracy of every model x runtime x "
                    "precision; `profile compare` for two devices", EXAMPLES)
    p.add_argument("--models", help=f"encoders, random init (default {','.join(DEFAULT_MODELS)}; none with "
                   "--checkpoint)")
    p.add_argument("--checkpoint", action="append", default=[],
                   help="a trained run's .ckpt: seg, det, depth or cls (repeatable)")
    p.add_argument("--runtimes", default=",".join(c.runtimes), help="comma-separated (default %(default)s); web: the "
                   "web app in headless Chromium, a cell each for WASM and WebGPU (needs chromium and `npm ci --prefix "
                   "apps/web`)")
    p.add_argument("--precision", default=",".join(c.precisions), help="fp32, fp16, int8, comma-separated (default "
                   "%(default)s)")
    p.add_argument("--compute-units", default=",".join(c.compute_units),
                   help="Core ML on macOS: a cell per setting, comma-separated, of cpu_only, cpu_and_gpu, cpu_and_ne, "
                   "all (default %(default)s); elsewhere Core ML is exported and checked, not timed")
    p.add_argument("--img-size", type=int, nargs="+", help="input sizes, square (default: each encoder's "
                   "paper size, swin_l 640 and the others 512, or the checkpoint's training size)")
    p.add_argument("--threads", type=int, help="threads for every runtime (default: the usable cores)")
    p.add_argument("--runs", type=int, default=c.runs, help="timed runs per cell (default %(default)s)")
    p.add_argument("--warmup", type=int, default=c.warmup, help="untimed runs first (default %(default)s)")
    p.add_argument("--parity-images", type=int, default=c.parity_images,
                   help="images of each export's parity check (default %(default)s)")
    p.add_argument("--calib-images", type=int, default=c.calib_images,
                   help="int8 calibration images (default %(default)s)")
    p.add_argument("--accuracy", nargs="+", default=[], help="`mcq eval TASK --json` files (default: published mIoU)")
    p.add_argument("--baselines", help="published accuracies (default mcq/profile/baselines.json)")
    p.add_argument("--data", help="images for pre-processing, parity and int8 calibration, in the checkpoints' task "
                   "layout (default: each task's embedded data)")
    p.add_argument("--out", help="folder for profile.json, report.md, the plot and artifacts/ (default "
                   "profiles/<device>)")
    p.add_argument("--outputs", choices=OUTPUTS, default=c.outputs,
                   help="seg: labels puts the argmax in every model (artifacts named -labels); post ms is then the "
                   "labels' resize to the image (default %(default)s)")
    p.add_argument("--per-op", action="store_true", help="also each cell's ops and their time from the runtime's "
                   "profiler (ExecuTorch ETDump, onnxruntime, torch.profiler): in profile.json, report.md and "
                   "ops/<cell>.csv")
    cmp = add_command(p.add_subparsers(dest="profile_command"), "compare",
                      "compare two profiles; exit 1 when B regresses beyond --fail-on", EXAMPLES)
    cmp.add_argument("a", help="profile.json (or its folder) of the reference")
    cmp.add_argument("b", help="profile.json (or its folder) to judge")
    cmp.add_argument("--fail-on", default="", help="e.g. latency+10%%,miou-0.5 (metrics: latency, p90, load, "
                     "memory, size, miou; %% relative to A, else absolute)")


def run(args: argparse.Namespace) -> int:
    if args.profile_command == "compare":
        return _compare(args)
    from mcq.profile import profile
    from mcq.profile.device import usable_cores
    from mcq.profile.report import format_table

    split = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    models = split(args.models) if args.models is not None else ([] if args.checkpoint else list(DEFAULT_MODELS))
    cfg = ProfileConfig(models=models, checkpoints=args.checkpoint, runtimes=split(args.runtimes),
                        precisions=split(args.precision), compute_units=split(args.compute_units),
                        img_sizes=args.img_size or [],
                        threads=args.threads or usable_cores(), runs=args.runs, warmup=args.warmup,
                        parity_images=args.parity_images, calib_images=args.calib_images,
                        accuracy=args.accuracy, baselines=args.baselines, data=args.data, out=args.out,
                        per_op=args.per_op, outputs=args.outputs)
    result = profile(cfg)
    print_tracebacks(args, result["cells"])
    print(format_table(result))
    print("written: " + ", ".join(result["outputs"].values()))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from mcq.profile.compare import compare

    text, failures = compare(args.a, args.b, args.fail_on)
    print(text)
    if failures:
        print(f"mcq: error: {len(failures)} regression(s) beyond --fail-on {args.fail_on}", file=sys.stderr)
        return 1
    return 0
