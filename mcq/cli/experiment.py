"""``mcq experiment caption-quality``: CLIP pretraining on three kinds of captions, judged downstream."""

from __future__ import annotations

import argparse
from pathlib import Path

from mcq.cli.common import add_command, add_group, lightning_logs_to_stdout
from mcq.errors import McqError
from mcq.experiments.caption_quality import CaptionQualityConfig

EXAMPLES = (
    "examples:\n"
    "  mcq experiment caption-quality --out runs/caption-quality   # 3 arms x 3 seeds: 21 min on 2 CPU cores\n"
    "  mcq experiment caption-quality --seeds 0,1,2,3,4 --clip-steps 400 --fractions 0.1,1   # a longer budget\n"
    "  python benchmarks/caption_quality.py --seeds 0,1               # the same, as a benchmark script"
)
BUDGET = {"noise": "share of noisy web captions", "n_train": "pretraining pairs", "n_val": "held-back pairs",
          "n_seg": "labelled training images (half as many for validation)", "data_size": "generated image size",
          "clip_steps": "CLIP steps per arm", "clip_batch": "CLIP batch", "clip_img_size": "CLIP input size",
          "text_width": "text transformer width", "text_layers": "text transformer layers",
          "zero_shot_template": "zero-shot prompt", "probe_steps": "steps of the frozen-encoder probe",
          "seg_steps": "SemanticFPN steps per fine-tune", "seg_batch": "SemanticFPN batch",
          "seg_img_size": "SemanticFPN crop size", "seg_lr": "SemanticFPN peak lr", "workers": "data loader workers"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    c = CaptionQualityConfig()
    p = add_command(add_group(subparsers, "experiment", "experiments that compare several trainings"),
                    "caption-quality", "CLIP pretraining on noisy web captions (txt) vs DataCompDR's web + synthetic "
                    "captions (gt,syn) vs none, judged by zero-shot accuracy, a frozen-encoder probe and fine-tuning "
                    "on shares of the labels, gaps with 95%% intervals", EXAMPLES)
    p.add_argument("--out", default=c.out, help="folder for data/, the runs and caption_quality.json (default "
                   "%(default)s)")
    p.add_argument("--encoder", default=c.encoder, help="image encoder (see `mcq models`; default %(default)s)")
    p.add_argument("--seeds", default=",".join(map(str, c.seeds)), help="seeds, comma-separated; each repeats "
                   "pretraining and fine-tuning for every arm (default %(default)s)")
    p.add_argument("--fractions", default=",".join(f"{f:g}" for f in c.fractions), help="shares of the labelled set "
                   "to fine-tune on, comma-separated (default %(default)s)")
    for name, text in BUDGET.items():
        default = getattr(c, name)
        p.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default,
                       help=f"{text} (default {default})")


def run(args: argparse.Namespace) -> None:
    from mcq.experiments.caption_quality import format_caption_quality_table, run_caption_quality

    lightning_logs_to_stdout()
    fields = CaptionQualityConfig.__dataclass_fields__
    given = {k: v for k, v in vars(args).items() if k in fields and k not in ("seeds", "fractions")}
    seeds = _numbers(args.seeds, "--seeds", int, "0,1,2")
    fractions = _numbers(args.fractions, "--fractions", float, "0.1,1")
    if not all(0 < f <= 1 for f in fractions):
        raise McqError(f"--fractions {args.fractions!r}: shares of the labelled set, in (0, 1]")
    result = run_caption_quality(CaptionQualityConfig(seeds=seeds, fractions=fractions, **given))
    print(format_caption_quality_table(result))
    print(f"written: {Path(args.out) / 'caption_quality.json'} ({result['wall_s'] / 60:.1f} min)")


def _numbers(text: str, flag: str, kind: type, example: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        kinds = "integers" if kind is int else "numbers"
        raise McqError(f"{flag} {text!r}: expected {kinds}, comma-separated (e.g. {example})") from None
    if not values:
        raise McqError(f"{flag}: give at least one")
    return values
