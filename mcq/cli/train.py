"""``mcq train TASK``: train a task model with its recipe (``mcq/recipes``), flags overriding it."""

from __future__ import annotations

import argparse

from mcq.cli.common import add_command, lightning_logs_to_stdout
from mcq.recipes import load_recipe, quantization_aware
from mcq.tasks.specs import TASKS
from mcq.train.config import TrainConfig

EXAMPLES = (
    "examples:\n"
    "  mcq train seg --backbone mci2                      # the paper's recipe (Table 14)\n"
    "  mcq train seg --backbone mci0 --max-steps 300 --batch-size 8 --img-size 256   # a CPU run\n"
    "  mcq train seg --backbone mci2 --init mobileclip_s2.pt --data ADEChallengeData2016\n"
    "  mcq train seg --backbone mci0 --out runs/x --resume  # continue an interrupted run\n"
    "  mcq train seg --qat --init runs/seg-mci0/checkpoints/best.ckpt --img-size 512   # quantization-aware\n"
    "  mcq train depth --backbone mci2 --data nyu_depth_v2                # Table 15 (25 epochs, batch 24)\n"
    "  mcq train depth --backbone mci0 --max-steps 450 --batch-size 8 --img-size 128 --lr 2e-3 --layer-decay 1  # CPU\n"
    "  mcq train cls --backbone mci2 --data imagenet --init mobileclip_s2.pt   # fine-tune (Table 12)\n"
    "  mcq train cls --backbone mci2 --data imagenet --init mobileclip_s2.pt --linear-probe\n"
    "  mcq train det --backbone mci2 --data coco --init mobileclip_s2.pt    # Mask R-CNN 1x (Table 13)\n"
    "  mcq train det --backbone mci0 --max-steps 400 --batch-size 4 --img-size 128 --fpn-channels 64 \\\n"
    "      --roi-batch-size 32 --val-every 200 --workers 0     # a CPU run on the embedded data (~10 min)\n"
    "  mcq train clip --model MobileCLIP2-S0 --data 'shards/{00000..00999}.tar' --val-data val/   # Table 11\n"
    "  mcq train clip --model MobileCLIP2-S0 --text-width 128 --text-layers 2 --max-steps 160 --val-every 80 \\\n"
    "      --batch-size 24 --img-size 64 --workers 1 --out runs/clip   # a CPU run on the embedded shards\n"
    "  mcq train seg --backbone mci0 --init runs/clip/checkpoints/openclip.pt   # its image tower, into seg"
)


def _pair(values: list[float]) -> str:
    return " ".join(f"{v:g}" for v in values)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    # the recipes' values in the help are read from the recipes, and the defaults from TrainConfig
    fpn, upernet, depth, cls, det = (load_recipe(*name) for name in (
        ("seg", "fpn"), ("seg", "upernet"), ("depth",), ("cls", "finetune"), ("det", "maskrcnn")))
    qat = quantization_aware(fpn)
    c = TrainConfig
    p = add_command(subparsers, "train", "train a task model", EXAMPLES)
    p.add_argument("task", choices=list(TASKS))
    p.add_argument("--backbone", default=c.backbone, help="encoder name (see `mcq models`; default %(default)s)")
    p.add_argument("--head", default=c.head, help="seg: fpn or upernet (default: the encoder's, as in the paper)")
    p.add_argument("--linear-probe", action="store_true",
                   help="cls: freeze the encoder, train a linear layer (Table 12's linear-probe recipe)")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="seg: train the neck and heads on a frozen encoder (a probe of its pretrained features)")
    p.add_argument("--data", help="dataset folder: ADE20K, NYUv2 (BTS), ImageNet-folder or COCO layout "
                   "(default: the embedded synthetic data)")
    p.add_argument("--init", help="CLIP checkpoint to initialise the encoder (OpenCLIP, MobileCLIP .pt or timm); "
                   "or an mcq checkpoint of the task (a run's, or `mcq import`'s): the whole model, fine-tuned")
    p.add_argument("--init-partial", action="store_true",
                   help="load what matches even if encoder weights stay unloaded")
    p.add_argument("--qat", action="store_true",
                   help=f"seg, cls: quantization-aware fine-tune of the trained checkpoint given as --init "
                        f"({round(100 * qat.max_steps / fpn.max_steps)}%% of its run, from "
                        f"{round(100 * qat.lr / fpn.lr)}%% of its lr; give --img-size the size you will export at); "
                        "its int8 exports keep the learnt ranges")
    p.add_argument("--max-steps", type=int, help=f"iterations (recipe: {fpn.max_steps // 1000}k SemanticFPN, "
                   f"{upernet.max_steps // 1000}k UperNet; depth {depth.epochs} epochs, cls {cls.epochs} epochs, det "
                   f"{det.epochs}: --max-steps shortens those, keeping the warm-up's and the lr steps' share)")
    p.add_argument("--batch-size", type=int, help=f"global batch, split across devices (recipe: seg {fpn.batch_size} "
                   f"/ {upernet.batch_size}, depth {depth.batch_size}, cls {cls.batch_size}, det {det.batch_size})")
    p.add_argument("--img-size", type=int, help=f"crop size (recipe: seg {fpn.img_size}, depth {depth.img_size}, cls "
                   f"{cls.img_size}; det {det.img_size}: training crops, and the long side of evaluated images)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--drop-path", type=float, help=f"stochastic depth rate (recipe: {fpn.drop_path:g}; the paper "
                   "sweeps 0-0.2)")
    p.add_argument("--crop-scale", type=float, nargs=2, metavar=("MIN", "MAX"), help="area range of the random crops, "
                   f"as a share of the image (recipe: seg {_pair(fpn.crop_scale)}, depth {_pair(depth.crop_scale)}, "
                   f"cls {_pair(cls.crop_scale)}; det: the scale jitter, {_pair(det.crop_scale)})")
    p.add_argument("--layer-decay", type=float, help=f"depth: layer-wise lr decay over the encoder (recipe: "
                   f"{depth.layer_decay:g}, which keeps a CLIP init's early layers; 1 lets a random init's early "
                   "layers learn)")
    p.add_argument("--val-every", type=int, help="validate every N iterations (depth, cls, det: every epoch)")
    p.add_argument("--fpn-channels", type=int, help=f"det: width of the FPN, RPN and mask head (recipe: "
                   f"{det.fpn_channels})")
    p.add_argument("--roi-batch-size", type=int, help=f"det: RoIs sampled per image for the box and mask heads "
                   f"(recipe: {det.roi_batch_size}; fewer make a CPU run affordable)")
    clip = p.add_argument_group("clip")
    clip.add_argument("--model", help="clip: an open_clip architecture (MobileCLIP2-S0 (default), MobileCLIP-S1, "
                      "MobileCLIP-S2, MobileCLIP-B, ViT-B-16, ...) or an mcq encoder with MobileCLIP2-S0's text tower; "
                      "--data: .tar shards (folder, brace pattern or a::b)")
    clip.add_argument("--val-data", help="clip: shards to measure image<->text recall@1/5 on")
    clip.add_argument("--captions", default=c.captions, help="clip: captions the loss is applied to: gt,syn "
                      "(default: both, averaged; one synthetic caption sampled per image), gt or syn")
    clip.add_argument("--distill", action="store_true", help="clip: add MobileCLIP's distillation loss against "
                      "the teacher embeddings stored in the shards (npz), the student shown the stored augmentation "
                      "(paug.json) of the image embedding used")
    clip.add_argument("--text-width", type=int, help="clip: narrow the text transformer (e.g. 128 on a CPU)")
    clip.add_argument("--text-layers", type=int, help="clip: fewer text transformer layers (e.g. 2 on a CPU)")
    p.add_argument("--workers", type=int, default=c.workers, help="data loader workers per process "
                   "(default %(default)s)")
    p.add_argument("--accelerator", default=c.accelerator, help="cpu, gpu or auto (default)")
    p.add_argument("--devices", type=int, default=c.devices, help="processes per node (DDP when > 1)")
    p.add_argument("--num-nodes", type=int, default=c.num_nodes)
    p.add_argument("--precision", help="Lightning precision (default: bf16-mixed on GPUs with bf16, else 32-true)")
    p.add_argument("--out", help="run directory (default runs/TASK-BACKBONE, cls linear probe runs/cls-BACKBONE-lp)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                   "(clip: the shard stream continues where the run stopped)")
    p.add_argument("--exist-ok", action="store_true", help="overwrite a finished run in --out")
    p.add_argument("--seed", type=int, default=c.seed)


def run(args: argparse.Namespace) -> None:
    from mcq.tasks.specs import task_spec
    from mcq.train.train import train

    lightning_logs_to_stdout()
    fields = TrainConfig.__dataclass_fields__
    out, metrics = train(TrainConfig(**{k: v for k, v in vars(args).items() if k in fields}))
    print(task_spec(args.task).format_table(metrics))
    extra = ", checkpoints/openclip.pt" if "openclip_checkpoint" in metrics else ""
    print(f"run written to {out} (metrics.json, checkpoints/best.ckpt, checkpoints/last.ckpt{extra})")
