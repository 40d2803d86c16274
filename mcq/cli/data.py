"""``mcq data synth TASK``: an embedded synthetic dataset, written in the task's dataset layout."""

from __future__ import annotations

import argparse

from mcq.cli.common import add_command, add_group
from mcq.tasks.specs import TASKS

EXAMPLES = (
    "examples:\n"
    "  mcq data synth seg --out data/synth-seg --train 240 --val 48      # ADE20K layout\n"
    "  mcq data synth depth --out data/synth-nyu --train 240 --val 48    # NYUv2 (BTS) layout; --val: test frames\n"
    "  mcq data synth cls --out data/synth-in --train 24 --val 8         # ImageNet folders; counts per class\n"
    "  mcq data synth det --out data/synth-coco --train 400 --val 48     # COCO layout (polygons and RLE)\n"
    "  mcq data synth clip --out data/synth-clip --noise 0.5   # DataCompDR shards (+ seg/, zeroshot/)"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    # the defaults are the writers' (mcq.data.SYNTH), named here, not repeated: the command prints what it wrote
    p = add_command(add_group(subparsers, "data", "datasets"), "synth", "write an embedded synthetic dataset", EXAMPLES)
    p.add_argument("task", choices=list(TASKS))
    p.add_argument("--out", required=True, help="folder to write (in the task's dataset layout)")
    p.add_argument("--train", type=int, help="training images; cls: per class (default: the task's)")
    p.add_argument("--val", type=int, help="validation (depth: test) images; cls: per class (default: the task's)")
    p.add_argument("--size", type=int, help="image width in pixels (default: the task's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, help="clip: share of web captions that are wrong, unrelated or empty "
                   "(default: the writer's)")


def run(args: argparse.Namespace) -> None:
    from mcq.data import synthesize

    print(synthesize(args.task, args.out, args.seed, n_train=args.train, n_val=args.val, size=args.size,
                     noise=args.noise))
