"""``mcq eval TASK``: the metrics of a checkpoint, of an exported seg model, or CLIP's zero-shot accuracy."""

from __future__ import annotations

import argparse

from mcq.cli.common import add_command, lightning_logs_to_stdout
from mcq.errors import McqError
from mcq.tasks.specs import TASKS

EXAMPLES = (
    "examples:\n"
    "  mcq eval seg --checkpoint runs/seg-mci0/checkpoints/best.ckpt --json metrics.json\n"
    "  mcq eval seg --model exports/mci0_fpn_512_int8.onnx      # the artifact, through its own runtime\n"
    "  mcq eval depth --checkpoint runs/depth-mci0/checkpoints/best.ckpt --data nyu_depth_v2\n"
    "  mcq eval cls --checkpoint runs/cls-mci0/checkpoints/best.ckpt --data imagenet --json val.json\n"
    "  mcq eval det --checkpoint runs/det-mci2/checkpoints/best.ckpt --data coco --json val.json   # box + mask AP\n"
    "  mcq eval clip --checkpoint runs/clip/checkpoints/best.ckpt --data 'val/{00000..00007}.tar' --json r.json\n"
    "  mcq eval clip --checkpoint runs/clip/checkpoints/last.ckpt --captions gt,syn   # recall on both captions\n"
    "  mcq eval clip --checkpoint last.ckpt --zero-shot imagenet/val --class-names classnames.txt   # top-1/5\n"
    "  mcq eval clip --checkpoint last.ckpt --zero-shot data/synth-clip/zeroshot --templates 'a photo of a {}'"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "eval", "evaluate a checkpoint", EXAMPLES)
    p.add_argument("task", choices=list(TASKS))
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="a run's checkpoints/best.ckpt or last.ckpt (evaluated with Lightning)")
    which.add_argument("--model", help="seg: an exported .onnx / .pte (or a .ckpt), run by its own runtime")
    p.add_argument("--data", help="dataset folder in the task's layout; clip: held-back .tar shards (a folder, its "
                   "val/ folder, a brace pattern or a::b) (default: the embedded synthetic data)")
    p.add_argument("--captions", help="clip: caption kinds to score recall on: gt,syn, gt or syn (default: those "
                   "the model was trained on)")
    p.add_argument("--zero-shot", metavar="FOLDER", help="clip: classify FOLDER/<class>/* from the class names "
                   "alone (open_clip's zero-shot classifier; top-1/5)")
    p.add_argument("--class-names", help="clip --zero-shot: a file of class names, one per class folder in sorted "
                   "order (default: the folder names, underscores as spaces)")
    p.add_argument("--templates", default="openai", help="clip --zero-shot: prompt templates: openai (CLIP's 80 "
                   "ImageNet prompts), simple (open_clip's 18) or one of your own with {} (default %(default)s)")
    p.add_argument("--img-size", type=int, help="evaluation size (default: the training size; det: the long side)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--threads", type=int, help="runtime threads for --model (default: the runtime's)")


def run(args: argparse.Namespace) -> None:
    from mcq.runtime.evaluate import evaluate_seg_model
    from mcq.tasks.specs import task_spec
    from mcq.train.evaluate import evaluate

    lightning_logs_to_stdout()
    if args.zero_shot:
        return _zero_shot(args)
    if args.model:
        if not task_spec(args.task).artifact_accuracy:  # the tasks whose artifacts mcq scores (seg)
            raise McqError(f"--model evaluates exported segmentation models; use --checkpoint for {args.task}")
        metrics = evaluate_seg_model(args.model, args.data, args.json, args.threads)
        print(f"{args.model} through {metrics['runtime']} ({metrics['precision']}, {metrics['img_size']} px)")
    else:
        metrics = evaluate(args.task, args.checkpoint, args.data, args.img_size, args.batch_size, args.workers,
                           args.json, captions=args.captions)
    print(task_spec(args.task).format_table(metrics))
    if args.json:
        print(f"metrics written to {args.json}")


def _zero_shot(args: argparse.Namespace) -> None:
    from mcq.tasks.specs import task_spec
    from mcq.train.zero_shot import format_zero_shot_table, zero_shot

    if not task_spec(args.task).image_text or not args.checkpoint:
        raise McqError("--zero-shot is for clip, with --checkpoint")
    metrics = zero_shot(args.checkpoint, args.zero_shot, args.templates, args.class_names, args.img_size,
                        args.batch_size, args.workers, args.json)
    print(format_zero_shot_table(metrics))
    if args.json:
        print(f"metrics written to {args.json}")
