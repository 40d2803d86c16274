"""``mcq export FORMAT``: export a checkpoint to on-device artifacts, each checked against PyTorch before it is kept
(``mmseg``, ``mmdet``: back to those frameworks' checkpoints)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mcq.apps.install import APPS
from mcq.cli.common import add_command, print_tracebacks
from mcq.errors import McqError
from mcq.export.exporter import EVAL_IMAGES
from mcq.export.labels import OUTPUTS

EXAMPLES = (
    "examples:\n"
    "  mcq export all --checkpoint runs/seg-mci0/checkpoints/best.ckpt --precision fp32,int8\n"
    "  mcq export onnx --checkpoint best.ckpt --img-size 512 --out exports --json exports/report.json\n"
    "  mcq export onnx --checkpoint best.ckpt --precision int8 --explain   # where does int8 depart from PyTorch?\n"
    "  mcq export onnx --checkpoint best.ckpt --precision int8 --calibration percentile --int8-fallback off\n"
    "  mcq export onnx --checkpoint best.ckpt --precision int8 --eval-images 200   # mIoU drop on 200 images\n"
    "  mcq export all --checkpoint runs/depth-mci0/checkpoints/best.ckpt   # depth, cls, det models take every path\n"
    "  mcq export coreml --checkpoint best.ckpt --app ios          # into apps/ios/McqSegment/McqModel.mlpackage\n"
    "  mcq export executorch --checkpoint best.ckpt --app android  # into apps/android/app/src/main/assets/\n"
    "  mcq export executorch --checkpoint best.ckpt --app android --apps-dir ~/src/mcq/apps   # mcq installed\n"
    "  mcq export --list-targets                                   # the deploy targets in export/\n"
    "  mcq export --target android-xnnpack-int8 --checkpoint best.ckpt   # format, precision, ... from the target\n"
    "  mcq export --target web-onnx-fp32 --checkpoint best.ckpt --img-size 256   # a flag overrides the target\n"
    "  mcq export --target my-device.json --checkpoint best.ckpt  # a target file of your own (same layout)\n"
    "  mcq export onnx --checkpoint best.ckpt --outputs labels    # seg: class indices from the graph, no argmax\n"
    "  mcq export mmseg --checkpoint best.ckpt --out exports/mci2_fpn.pth   # back to mmsegmentation (no parity)\n"
    "  mcq export mmdet --checkpoint runs/det-mci2/checkpoints/best.ckpt --out exports/mci2_maskrcnn.pth"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "export", "export a checkpoint (seg, depth, cls or det) and check it against PyTorch",
                    EXAMPLES)
    p.add_argument("format", nargs="?", choices=["coreml", "onnx", "executorch", "all", "mmseg", "mmdet"],
                   help="the format to export to (with --target: the target's, which may be left out); mmseg, "
                        "mmdet: an mmsegmentation / mmdetection checkpoint (--out FILE.pth or a folder), no artifact")
    p.add_argument("--checkpoint", help="a run's checkpoints/best.ckpt or last.ckpt (required)")
    p.add_argument("--target", help="a deploy target: a name from `--list-targets` (export/NAME.json) or the path "
                   "of a .json target file; it sets format, precision, size, calibration, delegate and compute "
                   "units, and flags given here override it for this run")
    p.add_argument("--list-targets", action="store_true", help="list the deploy targets and exit")
    p.add_argument("--precision", default="", help="fp32, fp16, int8, comma-separated (default: the target's; "
                   "else fp16 for Core ML, fp32 otherwise)")
    p.add_argument("--img-size", type=int, help="fixed input size, square (depth: the height of a 4:3 input) "
                   "(default: the target's; else the training size)")
    p.add_argument("--data", help="dataset in the task's layout for the parity check and int8 calibration (default: "
                   "the embedded data)")
    p.add_argument("--out", default="exports", help="folder for the artifacts (default %(default)s/)")
    p.add_argument("--json", help="also write the export report to this JSON file")
    p.add_argument("--eval-images", type=int, metavar="N", help="seg: the mIoU of each artifact "
                   "that runs here and of the checkpoint in PyTorch (and the drop) on the first N validation images "
                   f"of --data (default {EVAL_IMAGES}; 0: not measured)")
    p.add_argument("--explain", action="store_true", help="write error maps (ARTIFACT.explain/image_NN.png) and "
                   "find the first layer that drifts from PyTorch (ARTIFACT.explain/layers.json)")
    p.add_argument("--calibration", help="int8 calibration: auto (default: the target's, else auto: each of the "
                   "format's in turn until the artifact passes its check); onnx: minmax, percentile, entropy; "
                   "executorch: minmax, moving_average, histogram; qat: the ranges a `mcq train --qat` checkpoint "
                   "learnt (executorch takes them by default)")
    p.add_argument("--int8-fallback", choices=["auto", "off"], default="auto",
                   help="int8: when no calibration passes, keep the fewest modules float that make it pass, chosen by "
                   "their measured effect on the check (default %(default)s)")
    p.add_argument("--outputs", choices=OUTPUTS,
                   help="seg: logits [1, classes, H, W] (default: the target's, else logits), or labels [1, H, W]: "
                   "the argmax in the graph, the class index per pixel (uint8; Core ML int32)")
    p.add_argument("--executorch-backend", choices=["xnnpack", "coreml"],
                   help="ExecuTorch delegate (default: the target's, else xnnpack; coreml lowers to Core ML, which "
                   "runs only on Apple devices)")
    p.add_argument("--app", choices=sorted(APPS), help="also copy the artifact (one precision) into that sample "
                   "app's project: ios takes coreml, android executorch")
    p.add_argument("--apps-dir", metavar="DIR", help="with --app: the apps/ folder of mcq's source tree (default: "
                   "the checkout's that mcq runs from; an installed mcq needs it)")


def export_kwargs(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``export_checkpoint``: the flags, over the ``--target``'s values when there is one."""
    precisions = [p for p in args.precision.split(",") if p]
    if args.target:
        from mcq.export.targets import export_arguments, load_target

        target = load_target(args.target)
        if args.format and args.format != target.format:
            raise McqError(f"target {target.name} exports to {target.format}, not {args.format}: leave out the "
                           f"format or give {target.format}")
        return export_arguments(target, precisions, args.img_size, args.executorch_backend, args.outputs,
                                args.calibration) | {"int8_fallback": args.int8_fallback}
    if not args.format:
        raise McqError("give a format (coreml, onnx, executorch, all) or --target NAME (see --list-targets)")
    from mcq.export.formats import FORMATS

    backend = args.executorch_backend or "xnnpack"
    return dict(formats=list(FORMATS) if args.format == "all" else [args.format], precisions=precisions or [None],
                img_size=args.img_size, options={"executorch": {"backend": backend}} if backend != "xnnpack" else {},
                outputs=args.outputs or "logits", calibration=args.calibration or "auto",
                int8_fallback=args.int8_fallback)


def run(args: argparse.Namespace) -> int:
    if args.list_targets:
        from mcq.export.targets import TARGETS_DIR, format_targets

        print(f"deploy targets in {TARGETS_DIR.resolve()} (mcq export --target NAME):")
        print(format_targets())
        return 0
    if not args.checkpoint:
        raise McqError("--checkpoint is required: a run's checkpoints/best.ckpt or last.ckpt")
    if args.format in ("mmseg", "mmdet"):
        return _export_mm(args)
    from mcq.apps.install import check_app_export, install_export
    from mcq.export.exporter import export_checkpoint
    from mcq.export.reports import failed_artifacts, format_report
    from mcq.io import write_json

    kwargs = export_kwargs(args)
    if args.app:
        check_app_export(args.app, args.apps_dir, kwargs["formats"], kwargs["precisions"])
    elif args.apps_dir:
        raise McqError("--apps-dir goes with --app ios|android")
    evals = {} if args.eval_images is None else {"eval_images": args.eval_images}
    reports = export_checkpoint(args.checkpoint, out=args.out, data=args.data, explain=args.explain, **evals, **kwargs)
    print(format_report(reports))
    if args.json:
        write_json(args.json, reports)
    print_tracebacks(args, [*reports, *(r["explain"] for r in reports if "explain" in r)])
    failed = failed_artifacts(reports)
    if failed:
        print(f"mcq: error: {len(failed)} artifact(s) failed their check and were not kept: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    if args.app:
        print(f"{args.app} app: " + ", ".join(map(str, install_export(reports, args.app, args.apps_dir))))
    return 0


def _export_mm(args: argparse.Namespace) -> int:
    from mcq.interop.mmdet import export_mmdet
    from mcq.interop.mmseg import export_mmseg

    out = Path(args.out) if args.out.endswith(".pth") else Path(args.out) / f"{args.format}.pth"
    config = (export_mmseg if args.format == "mmseg" else export_mmdet)(args.checkpoint, out)
    print(f"wrote {out}; its {args.format} config's model needs: {config}")
    return 0
