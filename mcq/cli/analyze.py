"""``mcq analyze attention-distance``: the mean attention distance per head and layer of a ViT encoder."""

from __future__ import annotations

import argparse

from mcq.cli.common import add_command, add_group

EXAMPLES = (
    "examples:\n"
    "  mcq analyze attention-distance --checkpoint MobileCLIP-B/open_clip_model.safetensors "
    "--data ADEChallengeData2016\n"
    "  mcq analyze attention-distance --checkpoint runs/seg-vit_b16/checkpoints/best.ckpt --data data/synth-seg \\\n"
    "      --images 16 --img-size 224 --out analysis/   # attention_distance.json and .png (the paper's Fig. 3)"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(add_group(subparsers, "analyze", "analyses of an encoder"), "attention-distance",
                    "mean attention distance per head and layer of a ViT encoder, in pixels (the paper's Fig. 3)",
                    EXAMPLES)
    p.add_argument("--checkpoint", required=True, help="an OpenCLIP checkpoint (open_clip_config.json beside it "
                   "names the tower, else vit_b16) or an mcq run's .ckpt with a ViT encoder")
    p.add_argument("--data", required=True, help="an ADE20K-layout folder (its validation images), a `mcq data synth "
                   "clip` folder (its seg/ set) or a folder of images")
    p.add_argument("--images", type=int, default=32, help="images to average over (default %(default)s)")
    p.add_argument("--img-size", type=int, help="input size, square (default: the tower's own, e.g. 224)")
    p.add_argument("--out", default="analysis", help="folder for attention_distance.json and .png (default "
                   "%(default)s/)")


def run(args: argparse.Namespace) -> None:
    from mcq.analysis.attention_distance import analyze_attention_distance

    r = analyze_attention_distance(args.checkpoint, args.data, args.images, args.out, args.img_size)
    print(f"{r['encoder']}: mean attention distance (px) over {r['images']} images at {r['img_size']} px, "
          f"{r['heads']} heads (min / mean / max over heads)")
    for i, heads in enumerate(r["mean_distance_px"], start=1):
        print(f"layer {i:>2}: {min(heads):7.1f} {sum(heads) / len(heads):7.1f} {max(heads):7.1f}")
    print("written: " + ", ".join(r["outputs"].values()))
