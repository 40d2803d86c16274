"""``mcq predict IMAGE...``: segment images with a checkpoint or an exported artifact."""

from __future__ import annotations

import argparse

from mcq.cli.common import add_command

EXAMPLES = "example:\n  mcq predict photo1.jpg photo2.jpg --model exports/mci0_fpn_512_fp32.onnx --out predictions"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "predict", "segment images with a checkpoint or an artifact", EXAMPLES)
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", required=True, help="a .ckpt, .onnx or .pte (with its .json metadata)")
    p.add_argument("--out", default="predictions", help="folder for NAME_mask.png and NAME_overlay.png")
    p.add_argument("--threads", type=int, help="runtime threads (default: the runtime's)")


def run(args: argparse.Namespace) -> None:
    from mcq.runtime.predict import predict_seg

    for row in predict_seg(args.images, args.model, args.out, args.threads):
        print(f"{row['image']}: {row['model_ms']:.1f} ms ({row['runtime']}) -> {row['overlay']}  "
              f"[{', '.join(row['classes'])}]")
