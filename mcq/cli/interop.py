"""``mcq import mmseg|mmdet``: another framework's checkpoint as an mcq checkpoint."""

from __future__ import annotations

import argparse

from mcq.cli.common import add_command, add_group
from mcq.recipes import load_recipe

EXAMPLES = (
    "examples:\n"
    "  mcq import mmseg iter_40000.pth --out imported/mci2_fpn.ckpt   # encoder, head, classes read from the file\n"
    "  mcq import mmseg upernet.pth --backbone swin_l --head upernet --out imported/swin_l_upernet.ckpt\n"
    "  mcq export all --checkpoint imported/mci2_fpn.ckpt --data ADEChallengeData2016   # checked artifacts\n"
    "  mcq train seg --init imported/mci2_fpn.ckpt --data my_ade_layout_data   # fine-tune the whole model\n"
    "  mcq import mmdet mask-rcnn_mci2_fpn_1x_coco.pth --out imported/mci2_maskrcnn.ckpt   # Mask R-CNN"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    im = add_group(subparsers, "import", "checkpoints of other frameworks as mcq checkpoints")
    for name, what, file in (("mmseg", "an mmsegmentation SemanticFPN or UperNet", "iter_N.pth"),
                             ("mmdet", "an mmdetection Mask R-CNN", "epoch_N.pth")):
        p = add_command(im, name, f"{what} checkpoint (.pth), read without mmcv / mmengine and without running code "
                        "in it", EXAMPLES)
        p.add_argument("checkpoint", help=f"the {name} checkpoint (Runner's {file} or publish_model.py's)")
        p.add_argument("--out", required=True, help="the mcq checkpoint to write (.ckpt)")
        p.add_argument("--backbone", help="the encoder (default: the one whose shapes the backbone fills)")
        if name == "mmseg":
            p.add_argument("--head", choices=["fpn", "upernet"], help="default: read from the decode head's keys")
        else:
            p.add_argument("--img-size", type=int, help="the long side images are resized to (default: the "
                           f"recipe's {load_recipe('det', 'maskrcnn').img_size})")


def run(args: argparse.Namespace) -> None:
    if args.import_command == "mmseg":
        from mcq.interop.mmseg import import_mmseg

        report, task = import_mmseg(args.checkpoint, args.out, args.backbone, args.head), "seg"
    else:
        from mcq.interop.mmdet import import_mmdet

        report, task = import_mmdet(args.checkpoint, args.out, args.backbone, args.img_size), "det"
    print(report.summary())
    print(f"wrote {args.out}: `mcq eval {task} --checkpoint {args.out}`, `mcq export all --checkpoint {args.out}`")
