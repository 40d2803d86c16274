"""``mcq``: a thin shell over the library. Each command parses, calls one library function, prints."""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from mcq.apps.install import APPS, app_model_path
from mcq.errors import McqError, first_line
from mcq.export.labels import OUTPUTS

_EXAMPLES = {
    "models": "examples:\n  mcq models\n  mcq models --params   # every encoder x head: parameters beside the paper's",
    "synth": (
        "examples:\n"
        "  mcq data synth seg --out data/synth-seg --train 240 --val 48      # ADE20K layout\n"
        "  mcq data synth depth --out data/synth-nyu --train 240 --val 48    # NYUv2 (BTS) layout; --val: test frames\n"
        "  mcq data synth cls --out data/synth-in --train 24 --val 8         # ImageNet folders; counts per class\n"
        "  mcq data synth det --out data/synth-coco --train 400 --val 48     # COCO layout (polygons and RLE)\n"
        "  mcq data synth clip --out data/synth-clip --noise 0.5   # DataCompDR shards (+ seg/, zeroshot/)"
    ),
    "train": (
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
    ),
    "eval": (
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
    ),
    "export": (
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
    ),
    "predict": "example:\n  mcq predict photo1.jpg photo2.jpg --model exports/mci0_fpn_512_fp32.onnx --out predictions",
    "import": (
        "examples:\n"
        "  mcq import mmseg iter_40000.pth --out imported/mci2_fpn.ckpt   # encoder, head, classes read from the file\n"
        "  mcq import mmseg upernet.pth --backbone swin_l --head upernet --out imported/swin_l_upernet.ckpt\n"
        "  mcq export all --checkpoint imported/mci2_fpn.ckpt --data ADEChallengeData2016   # checked artifacts\n"
        "  mcq train seg --init imported/mci2_fpn.ckpt --data my_ade_layout_data   # fine-tune the whole model\n"
        "  mcq import mmdet mask-rcnn_mci2_fpn_1x_coco.pth --out imported/mci2_maskrcnn.ckpt   # Mask R-CNN"
    ),
    "profile": (
        "examples:\n"
        "  mcq profile --models mci0,mci2,swin_l --runtimes torch,onnxruntime,executorch --threads 4 --out profiles/laptop\n"
        "  mcq profile --models mci0 --img-size 256 512 --precision fp32,int8 --runs 50   # resolution as a third axis\n"
        "  mcq profile --checkpoint runs/seg-mci0/checkpoints/best.ckpt --accuracy val.json onnx_int8_val.json\n"
        "  mcq profile --checkpoint runs/det-mci0/checkpoints/best.ckpt --precision fp32   # Mask R-CNN: graph per cell\n"
        "  mcq profile --models mci0 --runtimes executorch,onnxruntime --precision fp32 --per-op   # where the time goes\n"
        "  mcq profile --models mci0 --runtimes onnxruntime,web --precision fp32   # the browser (onnxruntime-web)\n"
        "  mcq profile compare profiles/laptop profiles/ci --fail-on latency+10%,miou-0.5   # a regression gate"
    ),
    "analyze": (
        "examples:\n"
        "  mcq analyze attention-distance --checkpoint MobileCLIP-B/open_clip_model.safetensors --data ADEChallengeData2016\n"
        "  mcq analyze attention-distance --checkpoint runs/seg-vit_b16/checkpoints/best.ckpt --data data/synth-seg \\\n"
        "      --images 16 --img-size 224 --out analysis/   # attention_distance.json and .png (the paper's Fig. 3)"
    ),
    "experiment": (
        "examples:\n"
        "  mcq experiment caption-quality --out runs/caption-quality   # 3 arms x 3 seeds: 21 min on 2 CPU cores\n"
        "  mcq experiment caption-quality --seeds 0,1,2,3,4 --clip-steps 400 --fractions 0.1,1   # a longer budget\n"
        "  python benchmarks/caption_quality.py --seeds 0,1               # the same, as a benchmark script"
    ),
    "app": (
        "examples:\n"
        "  npm ci --prefix apps/web                                   # once: onnxruntime-web, pinned (in a checkout)\n"
        "  mcq app web --model exports/mci0_fpn_512_fp32.onnx --port 8000   # then open the URL it prints\n"
        "  mcq app web --model exports/mci0_fpn_512_fp32.onnx --check photo.jpg --screenshot page.png  # headless\n"
        "  mcq app reference --model exports/mci0_fpn_512_fp16.mlpackage \\\n"
        "      --out apps/ios/McqSegmentTests/reference.json        # what the app's processing test checks against"
    ),
}


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback of any error (and of each "
                        "failed artifact or profile cell whose error was not mcq's own)")
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="mcq", description="CLIP-pretrained mobile encoders for on-device dense prediction.",
                                parents=[common], formatter_class=fmt, epilog=_EXAMPLES["train"])
    sub = p.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", parents=[common], help="list the registered encoders", epilog=_EXAMPLES["models"],
                            formatter_class=fmt)
    models.add_argument("--params", action="store_true",
                        help="parameters of every encoder x head (and Mask R-CNN) beside the paper's (Tables 9, 10)")

    data = sub.add_parser("data", parents=[common], help="datasets").add_subparsers(dest="data_command", required=True)
    synth = data.add_parser("synth", parents=[common], help="write an embedded synthetic dataset",
                            epilog=_EXAMPLES["synth"], formatter_class=fmt)
    synth.add_argument("task", choices=["seg", "depth", "cls", "det", "clip"])
    synth.add_argument("--out", required=True, help="folder to write (in the task's dataset layout)")
    synth.add_argument("--train", type=int, help="training images (default 240; cls: 24 per class; det: 400)")
    synth.add_argument("--val", type=int, help="validation (depth: test) images (default 48; cls: 8 per class)")
    synth.add_argument("--size", type=int, help="image width in pixels (default 256; cls, det: 128)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--noise", type=float, help="clip: share of web captions that are wrong, unrelated or empty "
                       "(default 0.5)")

    train = sub.add_parser("train", parents=[common], help="train a task model", epilog=_EXAMPLES["train"],
                           formatter_class=fmt)
    train.add_argument("task", choices=["seg", "depth", "cls", "det", "clip"])
    train.add_argument("--backbone", default="mci2", help="encoder name (see `mcq models`; default mci2)")
    train.add_argument("--head", default="", help="seg: fpn or upernet (default: the encoder's, as in the paper)")
    train.add_argument("--linear-probe", action="store_true",
                       help="cls: freeze the encoder, train a linear layer (Table 12's linear-probe recipe)")
    train.add_argument("--freeze-encoder", action="store_true",
                       help="seg: train the neck and heads on a frozen encoder (a probe of its pretrained features)")
    train.add_argument("--data", help="dataset folder: ADE20K, NYUv2 (BTS), ImageNet-folder or COCO layout "
                       "(default: the embedded synthetic data)")
    train.add_argument("--init", help="CLIP checkpoint to initialise the encoder (OpenCLIP, MobileCLIP .pt or timm); "
                       "or an mcq checkpoint of the task (a run's, or `mcq import`'s): the whole model, fine-tuned")
    train.add_argument("--init-partial", action="store_true", help="load what matches even if encoder weights stay unloaded")
    train.add_argument("--qat", action="store_true",
                       help="seg, cls: quantization-aware fine-tune of the trained checkpoint given as --init (a "
                            "tenth of its run, from 1%% of its lr; give --img-size the size you will export at); "
                            "its int8 exports keep the learnt ranges")
    train.add_argument("--max-steps", type=int, help="iterations (recipe: 40k SemanticFPN, 160k UperNet; depth "
                       "25 epochs, cls 100 epochs, det 12: --max-steps shortens those, keeping the warm-up's and "
                       "the lr steps' share)")
    train.add_argument("--batch-size", type=int, help="global batch, split across devices (recipe: seg 64 / 16, "
                       "depth 24, cls 1024, det 16)")
    train.add_argument("--img-size", type=int, help="crop size (recipe: seg 512, depth 480, cls 224; det 1024: "
                       "training crops, and the long side of evaluated images)")
    train.add_argument("--lr", type=float, help="peak learning rate")
    train.add_argument("--drop-path", type=float, help="stochastic depth rate (recipe: 0.1; the paper sweeps 0-0.2)")
    train.add_argument("--crop-scale", type=float, nargs=2, metavar=("MIN", "MAX"), help="area range of the random "
                       "crops, as a share of the image (recipe: seg 0.25 1, depth 0.5 1, cls 0.08 1; det: the scale "
                       "jitter, 0.5 2)")
    train.add_argument("--layer-decay", type=float, help="depth: layer-wise lr decay over the encoder (recipe: 0.8, "
                       "which keeps a CLIP init's early layers; 1 lets a random init's early layers learn)")
    train.add_argument("--val-every", type=int, help="validate every N iterations (depth, cls, det: every epoch)")
    train.add_argument("--fpn-channels", type=int, help="det: width of the FPN, RPN and mask head (recipe: 256)")
    train.add_argument("--roi-batch-size", type=int, help="det: RoIs sampled per image for the box and mask heads "
                       "(recipe: 512; fewer make a CPU run affordable)")
    clip = train.add_argument_group("clip")
    clip.add_argument("--model", help="clip: an open_clip architecture (MobileCLIP2-S0 (default), MobileCLIP-S1, "
                      "MobileCLIP-S2, MobileCLIP-B, ViT-B-16, ...) or an mcq encoder with MobileCLIP2-S0's text tower; "
                      "--data: .tar shards (folder, brace pattern or a::b)")
    clip.add_argument("--val-data", help="clip: shards to measure image<->text recall@1/5 on")
    clip.add_argument("--captions", default="gt,syn", help="clip: captions the loss is applied to: gt,syn "
                      "(default: both, averaged; one synthetic caption sampled per image), gt or syn")
    clip.add_argument("--distill", action="store_true", help="clip: add MobileCLIP's distillation loss against "
                      "the teacher embeddings stored in the shards (npz), the student shown the stored augmentation "
                      "(paug.json) of the image embedding used")
    clip.add_argument("--text-width", type=int, help="clip: narrow the text transformer (e.g. 128 on a CPU)")
    clip.add_argument("--text-layers", type=int, help="clip: fewer text transformer layers (e.g. 2 on a CPU)")
    train.add_argument("--workers", type=int, default=2, help="data loader workers per process (default 2)")
    train.add_argument("--accelerator", default="auto", help="cpu, gpu or auto (default)")
    train.add_argument("--devices", type=int, default=1, help="processes per node (DDP when > 1)")
    train.add_argument("--num-nodes", type=int, default=1)
    train.add_argument("--precision", help="Lightning precision (default: bf16-mixed on GPUs with bf16, else 32-true)")
    train.add_argument("--out", help="run directory (default runs/TASK-BACKBONE, cls linear probe runs/cls-BACKBONE-lp)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                       "(clip: the shard stream continues where the run stopped)")
    train.add_argument("--exist-ok", action="store_true", help="overwrite a finished run in --out")
    train.add_argument("--seed", type=int, default=0)

    ev = sub.add_parser("eval", parents=[common], help="evaluate a checkpoint", epilog=_EXAMPLES["eval"],
                        formatter_class=fmt)
    ev.add_argument("task", choices=["seg", "depth", "cls", "det", "clip"])
    which = ev.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="a run's checkpoints/best.ckpt or last.ckpt (evaluated with Lightning)")
    which.add_argument("--model", help="seg: an exported .onnx / .pte (or a .ckpt), run by its own runtime")
    ev.add_argument("--data", help="dataset folder in the task's layout; clip: held-back .tar shards (a folder, its "
                    "val/ folder, a brace pattern or a::b) (default: the embedded synthetic data)")
    ev.add_argument("--captions", help="clip: caption kinds to score recall on: gt,syn, gt or syn (default: those "
                    "the model was trained on)")
    ev.add_argument("--zero-shot", metavar="FOLDER", help="clip: classify FOLDER/<class>/* from the class names "
                    "alone (open_clip's zero-shot classifier; top-1/5)")
    ev.add_argument("--class-names", help="clip --zero-shot: a file of class names, one per class folder in sorted "
                    "order (default: the folder names, underscores as spaces)")
    ev.add_argument("--templates", default="openai", help="clip --zero-shot: prompt templates: openai (CLIP's 80 "
                    "ImageNet prompts), simple (open_clip's 18) or one of your own with {} (default openai)")
    ev.add_argument("--img-size", type=int, help="evaluation size (default: the training size; det: the long side)")
    ev.add_argument("--batch-size", type=int, default=4)
    ev.add_argument("--workers", type=int, default=2)
    ev.add_argument("--json", help="also write the metrics to this JSON file")
    ev.add_argument("--threads", type=int, help="runtime threads for --model (default: the runtime's)")

    ex = sub.add_parser("export", parents=[common], help="export a checkpoint (seg, depth, cls or det) and check it "
                        "against PyTorch",
                        epilog=_EXAMPLES["export"], formatter_class=fmt)
    ex.add_argument("format", nargs="?", choices=["coreml", "onnx", "executorch", "all", "mmseg", "mmdet"],
                    help="the format to export to (with --target: the target's, which may be left out); mmseg, "
                         "mmdet: an mmsegmentation / mmdetection checkpoint (--out FILE.pth or a folder), no artifact")
    ex.add_argument("--checkpoint", help="a run's checkpoints/best.ckpt or last.ckpt (required)")
    ex.add_argument("--target", help="a deploy target: a name from `--list-targets` (export/NAME.json) or the path "
                    "of a .json target file; it sets format, precision, size, calibration, delegate and compute "
                    "units, and flags given here override it for this run")
    ex.add_argument("--list-targets", action="store_true", help="list the deploy targets and exit")
    ex.add_argument("--precision", default="", help="fp32, fp16, int8, comma-separated (default: the target's; "
                    "else fp16 for Core ML, fp32 otherwise)")
    ex.add_argument("--img-size", type=int, help="fixed input size, square (depth: the height of a 4:3 input) "
                    "(default: the target's; else the training size)")
    ex.add_argument("--data", help="dataset in the task's layout for the parity check and int8 calibration (default: "
                    "the embedded data)")
    ex.add_argument("--out", default="exports", help="folder for the artifacts (default exports/)")
    ex.add_argument("--json", help="also write the export report to this JSON file")
    ex.add_argument("--eval-images", type=int, metavar="N", help="seg: the mIoU of each artifact "
                    "that runs here and of the checkpoint in PyTorch (and the drop) on the first N validation images "
                    "of --data (default 100; 0: not measured)")
    ex.add_argument("--explain", action="store_true", help="write error maps (ARTIFACT.explain/image_NN.png) and "
                    "find the first layer that drifts from PyTorch (ARTIFACT.explain/layers.json)")
    ex.add_argument("--calibration", help="int8 calibration: auto (default: the target's, else auto: each of the "
                    "format's in turn until the artifact passes its check); onnx: minmax, percentile, entropy; "
                    "executorch: minmax, moving_average, histogram; qat: the ranges a `mcq train --qat` checkpoint "
                    "learnt (executorch takes them by default)")
    ex.add_argument("--int8-fallback", choices=["auto", "off"], default="auto",
                    help="int8: when no calibration passes, keep the fewest modules float that make it pass, chosen by "
                    "their measured effect on the check (default auto)")
    ex.add_argument("--outputs", choices=OUTPUTS,
                    help="seg: logits [1, classes, H, W] (default: the target's, else logits), or labels [1, H, W]: "
                    "the argmax in the graph, the class index per pixel (uint8; Core ML int32)")
    ex.add_argument("--executorch-backend", choices=["xnnpack", "coreml"],
                    help="ExecuTorch delegate (default: the target's, else xnnpack; coreml lowers to Core ML, which runs only on Apple "
                    "devices)")
    ex.add_argument("--app", choices=sorted(APPS), help="also copy the artifact (one precision) into that sample "
                    "app's project: ios takes coreml, android executorch")
    ex.add_argument("--apps-dir", metavar="DIR", help="with --app: the apps/ folder of mcq's source tree (default: "
                    "the checkout's that mcq runs from; an installed mcq needs it)")

    _profile_parser(sub, common, fmt)

    im = sub.add_parser("import", parents=[common], help="checkpoints of other frameworks as mcq checkpoints"
                        ).add_subparsers(dest="import_command", required=True)
    for name, what, file in (("mmseg", "an mmsegmentation SemanticFPN or UperNet", "iter_N.pth"),
                             ("mmdet", "an mmdetection Mask R-CNN", "epoch_N.pth")):
        mm = im.add_parser(name, parents=[common], help=f"{what} checkpoint (.pth), read without mmcv / mmengine and "
                           "without running code in it", epilog=_EXAMPLES["import"], formatter_class=fmt)
        mm.add_argument("checkpoint", help=f"the {name} checkpoint (Runner's {file} or publish_model.py's)")
        mm.add_argument("--out", required=True, help="the mcq checkpoint to write (.ckpt)")
        mm.add_argument("--backbone", help="the encoder (default: the one whose shapes the backbone fills)")
        if name == "mmseg":
            mm.add_argument("--head", choices=["fpn", "upernet"], help="default: read from the decode head's keys")
        else:
            mm.add_argument("--img-size", type=int, help="the long side images are resized to (default: the "
                            "recipe's 1024)")

    an = sub.add_parser("analyze", parents=[common], help="analyses of an encoder").add_subparsers(
        dest="analyze_command", required=True)
    ad = an.add_parser("attention-distance", parents=[common], help="mean attention distance per head and layer of "
                       "a ViT encoder, in pixels (the paper's Fig. 3)", epilog=_EXAMPLES["analyze"], formatter_class=fmt)
    ad.add_argument("--checkpoint", required=True, help="an OpenCLIP checkpoint (open_clip_config.json beside it "
                    "names the tower, else vit_b16) or an mcq run's .ckpt with a ViT encoder")
    ad.add_argument("--data", required=True, help="an ADE20K-layout folder (its validation images), a `mcq data synth "
                    "clip` folder (its seg/ set) or a folder of images")
    ad.add_argument("--images", type=int, default=32, help="images to average over (default 32)")
    ad.add_argument("--img-size", type=int, help="input size, square (default: the tower's own, e.g. 224)")
    ad.add_argument("--out", default="analysis", help="folder for attention_distance.json and .png (default analysis/)")

    pr = sub.add_parser("predict", parents=[common], help="segment images with a checkpoint or an artifact",
                        epilog=_EXAMPLES["predict"], formatter_class=fmt)
    pr.add_argument("images", nargs="+", help="image files")
    pr.add_argument("--model", required=True, help="a .ckpt, .onnx or .pte (with its .json metadata)")
    pr.add_argument("--out", default="predictions", help="folder for NAME_mask.png and NAME_overlay.png")
    pr.add_argument("--threads", type=int, help="runtime threads (default: the runtime's)")

    _experiment_parser(sub, common, fmt)

    app = sub.add_parser("app", parents=[common], help="sample apps").add_subparsers(dest="app_command", required=True)
    web = app.add_parser("web", parents=[common], help="serve the web app (apps/web) on an exported segmentation "
                         "or depth model, run in the browser by onnxruntime-web", epilog=_EXAMPLES["app"],
                         formatter_class=fmt)
    web.add_argument("--model", required=True, help="an exported seg or depth .onnx (its .json metadata beside it)")
    web.add_argument("--port", type=int, default=8000, help="port on localhost (default 8000; 0: any free port)")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    web.add_argument("--check", metavar="IMAGE", help="instead of serving: run the page on IMAGE in headless Chromium, "
                     "print its agreement with onnxruntime in Python and its time; exit 1 below 99.9%% of pixels "
                     "(seg) or beyond 1e-3 relative error (depth)")
    web.add_argument("--screenshot", metavar="PNG", help="with --check: a screenshot of the page")
    ref = app.add_parser("reference", parents=[common], help="write the reference vector an app checks its pre- and "
                         "post-processing against", epilog=_EXAMPLES["app"], formatter_class=fmt)
    ref.add_argument("--model", required=True, help="an exported artifact (its .json metadata beside it)")
    ref.add_argument("--out", required=True, help="JSON file to write")
    ref.add_argument("--seed", type=int, default=0)
    return p


def _profile_parser(sub, common: argparse.ArgumentParser, fmt) -> None:
    from mcq.profile.config import DEFAULT_RUNTIMES

    pf = sub.add_parser("profile", parents=[common], help="latency, memory, size, FLOPs and accuracy of every model x "
                        "runtime x precision; `profile compare` for two devices", epilog=_EXAMPLES["profile"],
                        formatter_class=fmt)
    pf.add_argument("--models", help="encoders, random init (default mci0,mci1,mci2,vit_b16,swin_l,vit_adapter_b; "
                    "none with --checkpoint)")
    pf.add_argument("--checkpoint", action="append", default=[], help="a trained run's .ckpt: seg, det, depth or cls (repeatable)")
    pf.add_argument("--runtimes", default=",".join(DEFAULT_RUNTIMES), help="comma-separated (default "
                    f"{','.join(DEFAULT_RUNTIMES)}); web: the web app in headless Chromium, a cell each for WASM "
                    "and WebGPU (needs chromium and `npm ci --prefix apps/web`)")
    pf.add_argument("--precision", default="fp32,int8", help="fp32, fp16, int8, comma-separated (default fp32,int8)")
    pf.add_argument("--compute-units", default="cpu_only,cpu_and_gpu,all",
                    help="Core ML on macOS: a cell per setting, comma-separated, of cpu_only, cpu_and_gpu, cpu_and_ne, "
                    "all (default cpu_only,cpu_and_gpu,all); elsewhere Core ML is exported and checked, not timed")
    pf.add_argument("--img-size", type=int, nargs="+", help="input sizes, square (default: each encoder's "
                    "paper size, swin_l 640 and the others 512, or the checkpoint's training size)")
    pf.add_argument("--threads", type=int, help="threads for every runtime (default: the usable cores)")
    pf.add_argument("--runs", type=int, default=20, help="timed runs per cell (default 20)")
    pf.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    pf.add_argument("--parity-images", type=int, default=8, help="images of each export's parity check (default 8)")
    pf.add_argument("--calib-images", type=int, default=16, help="int8 calibration images (default 16)")
    pf.add_argument("--accuracy", nargs="+", default=[], help="`mcq eval TASK --json` files (default: published mIoU)")
    pf.add_argument("--baselines", help="published accuracies (default mcq/profile/baselines.json)")
    pf.add_argument("--data", help="images for pre-processing, parity and int8 calibration, in the checkpoints' task "
                    "layout (default: each task's embedded data)")
    pf.add_argument("--out", help="folder for profile.json, report.md, the plot and artifacts/ (default "
                    "profiles/<device>)")
    pf.add_argument("--outputs", choices=OUTPUTS, default="logits",
                    help="seg: labels puts the argmax in every model (artifacts named -labels); post ms is then the "
                    "labels' resize to the image (default logits)")
    pf.add_argument("--per-op", action="store_true", help="also each cell's ops and their time from the runtime's "
                    "profiler (ExecuTorch ETDump, onnxruntime, torch.profiler): in profile.json, report.md and "
                    "ops/<cell>.csv")
    cmp = pf.add_subparsers(dest="profile_command").add_parser(
        "compare", parents=[common], help="compare two profiles; exit 1 when B regresses beyond --fail-on",
        epilog=_EXAMPLES["profile"], formatter_class=fmt)
    cmp.add_argument("a", help="profile.json (or its folder) of the reference")
    cmp.add_argument("b", help="profile.json (or its folder) to judge")
    cmp.add_argument("--fail-on", default="", help="e.g. latency+10%%,miou-0.5 (metrics: latency, p90, load, "
                     "memory, size, miou; %% relative to A, else absolute)")


def _experiment_parser(sub, common: argparse.ArgumentParser, fmt) -> None:
    from mcq.experiments.caption_quality import CaptionQualityConfig as C

    ex = sub.add_parser("experiment", parents=[common], help="experiments that compare several trainings"
                        ).add_subparsers(dest="experiment_command", required=True)
    cq = ex.add_parser("caption-quality", parents=[common], help="CLIP pretraining on noisy web captions (txt) vs "
                       "DataCompDR's web + synthetic captions (gt,syn) vs none, judged by zero-shot accuracy, a "
                       "frozen-encoder probe and fine-tuning on shares of the labels, gaps with 95%% intervals",
                       epilog=_EXAMPLES["experiment"], formatter_class=fmt)
    cq.add_argument("--out", default=C.out, help=f"folder for data/, the runs and caption_quality.json (default {C.out})")
    cq.add_argument("--encoder", default=C.encoder, help=f"image encoder (see `mcq models`; default {C.encoder})")
    cq.add_argument("--seeds", default="0,1,2", help="seeds, comma-separated; each repeats pretraining and "
                    "fine-tuning for every arm (default 0,1,2)")
    cq.add_argument("--fractions", default="0.1,0.3,1", help="shares of the labelled set to fine-tune on, "
                    "comma-separated (default 0.1,0.3,1)")
    budget = {"noise": "share of noisy web captions", "n_train": "pretraining pairs", "n_val": "held-back pairs",
              "n_seg": "labelled training images (half as many for validation)", "data_size": "generated image size",
              "clip_steps": "CLIP steps per arm", "clip_batch": "CLIP batch", "clip_img_size": "CLIP input size",
              "text_width": "text transformer width", "text_layers": "text transformer layers",
              "zero_shot_template": "zero-shot prompt", "probe_steps": "steps of the frozen-encoder probe",
              "seg_steps": "SemanticFPN steps per fine-tune", "seg_batch": "SemanticFPN batch",
              "seg_img_size": "SemanticFPN crop size", "seg_lr": "SemanticFPN peak lr",
              "workers": "data loader workers"}
    for name, text in budget.items():
        default = getattr(C, name)
        cq.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default,
                        help=f"{text} (default {default})")


def _experiment(args: argparse.Namespace) -> None:
    from mcq.experiments.caption_quality import CaptionQualityConfig, format_caption_quality_table, run_caption_quality

    _lightning_logs_to_stdout()
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


def _profile(args: argparse.Namespace) -> int:
    if args.profile_command == "compare":
        from mcq.profile.compare import compare

        text, failures = compare(args.a, args.b, args.fail_on)
        print(text)
        if failures:
            print(f"mcq: error: {len(failures)} regression(s) beyond --fail-on {args.fail_on}", file=sys.stderr)
            return 1
        return 0
    from mcq.profile import ProfileConfig, profile
    from mcq.profile.device import usable_cores
    from mcq.profile.config import DEFAULT_MODELS
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
    _tracebacks(args, result["cells"])
    print(format_table(result))
    print("written: " + ", ".join(result["outputs"].values()))
    return 0


def _models(args: argparse.Namespace) -> None:
    if args.params:
        return _params()
    from mcq.models import describe_encoders

    rows = describe_encoders()
    w = max(len(r["name"]) for r in rows)
    print(f"{'name':<{w}} {'params(M)':>9}  {'head':<8} {'strides':<19} {'channels':<29} timm model")
    for r in rows:
        print(f"{r['name']:<{w}} {r['params_m']:>9.1f}  {r['default_head']:<8} {str(r['strides']):<19} "
              f"{str(r['channels']):<29} {r['timm_name']}")


def _params() -> None:
    from mcq.models.params import HEAD_NAMES, compare_params

    def pct(v: float | None) -> str:
        return "" if v is None else f"{v:+.2f}%"

    print(f"{'model':<28} {'mcq (M)':>8} {'paper (M)':>9} {'diff':>7} {'explained':>9}  source")
    notes: list[str] = []
    for r in compare_params():
        paper = "" if r["paper_m"] is None else f"{r['paper_m']:.1f}"
        explained = pct(r["explained_pct"]) if r["why"] else ""
        if r["why"] and r["why"] not in notes:
            notes.append(r["why"])
        mark = f" [{notes.index(r['why']) + 1}]" if r["why"] else ""
        print(f"{r['encoder'] + ' + ' + HEAD_NAMES[r['head']]:<28} {r['mcq_m']:>8.2f} {paper:>9} "
              f"{pct(r['diff_pct']):>7} {explained:>9}  {r['source']}{mark}".rstrip())
    for i, why in enumerate(notes, 1):
        print(f"[{i}] {why}")


def _synth(args: argparse.Namespace) -> None:
    from mcq.data import SYNTH

    write, layout = SYNTH[args.task]
    given = dict(n_train=args.train, n_val=args.val, size=args.size)
    if args.noise is not None:
        if args.task != "clip":
            raise McqError("--noise is for clip")
        given["noise"] = args.noise
    n = {k: v if v is not None else inspect.signature(write).parameters[k].default for k, v in given.items()}
    out = write(args.out, seed=args.seed, **n)
    val = "test" if args.task == "depth" else "validation"
    per_class = " per class" if args.task == "cls" else ""
    print(f"wrote {n['n_train']} training + {n['n_val']} {val} images{per_class} to {out} ({layout} layout)")


def _lightning_logs_to_stdout() -> None:
    """Lightning logs its start-up notes ("GPU available: ...") to stderr; keep stderr for mcq's one-line errors."""
    import logging

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        for h in logging.getLogger(name).handlers:
            if type(h) is logging.StreamHandler:  # Lightning's console handlers, bound to stderr at import
                h.stream = sys.stdout


def _train(args: argparse.Namespace) -> None:
    from mcq.tasks.specs import task_spec
    from mcq.train.config import TrainConfig
    from mcq.train.train import train

    _lightning_logs_to_stdout()
    fields = TrainConfig.__dataclass_fields__
    run, metrics = train(TrainConfig(**{k: v for k, v in vars(args).items() if k in fields}))
    print(task_spec(args.task).format_table(metrics))
    extra = ", checkpoints/openclip.pt" if "openclip_checkpoint" in metrics else ""
    print(f"run written to {run} (metrics.json, checkpoints/best.ckpt, checkpoints/last.ckpt{extra})")


def _eval(args: argparse.Namespace) -> None:
    from mcq.runtime.evaluate import evaluate_seg_model
    from mcq.tasks.specs import task_spec
    from mcq.train.evaluate import evaluate

    _lightning_logs_to_stdout()
    if args.zero_shot:
        return _zero_shot(args)
    if args.model:
        if args.task != "seg":
            raise McqError(f"--model evaluates exported segmentation models; use --checkpoint for {args.task}")
        metrics = evaluate_seg_model(args.model, args.data, args.json, args.threads)
        print(f"{args.model} through {metrics['runtime']} ({metrics['precision']}, {metrics['img_size']} px)")
    else:
        metrics = evaluate(args.task, args.checkpoint, args.data, args.img_size, args.batch_size, args.workers, args.json,
                           captions=args.captions)
    print(task_spec(args.task).format_table(metrics))
    if args.json:
        print(f"metrics written to {args.json}")


def _zero_shot(args: argparse.Namespace) -> None:
    from mcq.train.zero_shot import format_zero_shot_table, zero_shot

    if args.task != "clip" or not args.checkpoint:
        raise McqError("--zero-shot is for clip, with --checkpoint")
    metrics = zero_shot(args.checkpoint, args.zero_shot, args.templates, args.class_names, args.img_size,
                        args.batch_size, args.workers, args.json)
    print(format_zero_shot_table(metrics))
    if args.json:
        print(f"metrics written to {args.json}")


def _export_arguments(args: argparse.Namespace) -> dict:
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


def _import(args: argparse.Namespace) -> int:
    if args.import_command == "mmseg":
        from mcq.interop.mmseg import import_mmseg

        report, task = import_mmseg(args.checkpoint, args.out, args.backbone, args.head), "seg"
    else:
        from mcq.interop.mmdet import import_mmdet

        report, task = import_mmdet(args.checkpoint, args.out, args.backbone, args.img_size), "det"
    print(report.summary())
    print(f"wrote {args.out}: `mcq eval {task} --checkpoint {args.out}`, `mcq export all --checkpoint {args.out}`")
    return 0


def _export_mm(args: argparse.Namespace) -> int:
    from mcq.interop.mmdet import export_mmdet
    from mcq.interop.mmseg import export_mmseg

    out = Path(args.out) if args.out.endswith(".pth") else Path(args.out) / f"{args.format}.pth"
    config = (export_mmseg if args.format == "mmseg" else export_mmdet)(args.checkpoint, out)
    print(f"wrote {out}; its {args.format} config's model needs: {config}")
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.list_targets:
        from mcq.export.targets import TARGETS_DIR, format_targets

        print(f"deploy targets in {TARGETS_DIR.resolve()} (mcq export --target NAME):")
        print(format_targets())
        return 0
    if not args.checkpoint:
        raise McqError("--checkpoint is required: a run's checkpoints/best.ckpt or last.ckpt")
    if args.format in ("mmseg", "mmdet"):
        return _export_mm(args)
    from mcq.export.accuracy import format_accuracy
    from mcq.models.delegation import format_delegation
    from mcq.export.explain import format_drift
    from mcq.export.exporter import export_checkpoint
    from mcq.export.parity import format_parity_table
    from mcq.export.quantization import format_int8
    from mcq.export.reports import Status
    from mcq.io import write_json

    kwargs = _export_arguments(args)
    if args.app:
        _check_app_export(args.app, args.apps_dir, kwargs["formats"], kwargs["precisions"])
    elif args.apps_dir:
        raise McqError("--apps-dir goes with --app ios|android")
    evals = {} if args.eval_images is None else {"eval_images": args.eval_images}
    reports = export_checkpoint(args.checkpoint, out=args.out, data=args.data, explain=args.explain, **evals, **kwargs)
    print(format_parity_table(reports))
    for r in reports:
        if r["status"] == Status.NOT_RUN:
            print(f"{r['artifact']}: {r['parity']['numerics']}")
        if "delegation" in r:
            print(format_delegation(r["artifact"], r["delegation"]))
        if "int8" in r:
            print(format_int8(r["artifact"], r["int8"]))
        if "accuracy" in r:
            print(format_accuracy(r["artifact"], r["accuracy"]))
        ex = r.get("explain", {})
        if "drift" in ex:
            print(format_drift(r["artifact"], ex["drift"]))
        for key in ("drift_skipped", "skipped", "error"):
            if key in ex:
                print(f"{r['artifact']}: explain {key.replace('_', ' ')}: {ex[key]}")
        if "dir" in ex:
            print(f"  error maps: {ex['dir']}/image_*.png")
    if args.json:
        write_json(args.json, reports)
    _tracebacks(args, [*reports, *(r["explain"] for r in reports if "explain" in r)])
    failed = [r["artifact"] for r in reports if r["status"] == Status.FAILED]
    if failed:
        print(f"mcq: error: {len(failed)} artifact(s) failed their check and were not kept: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    if args.app:
        from mcq.apps.install import install_in_app

        [report] = [r for r in reports if r["format"] == APPS[args.app].format]
        print(f"{args.app} app: " + ", ".join(map(str, install_in_app(report["path"], args.app, args.apps_dir))))
    return 0


def _check_app_export(app: str, apps_dir: str | None, formats: list[str], precisions: list[str | None]) -> None:
    """``--app`` takes one artifact of the format the app runs, into a project that is there: refused before a long
    export otherwise."""
    app_model_path(app, apps_dir)
    fmt = APPS[app].format
    if fmt not in formats:
        raise McqError(f"--app {app} runs {fmt} artifacts: `mcq export {fmt} --app {app}` (or `mcq export all`)")
    if len(precisions) > 1:
        raise McqError(f"--app {app} takes one artifact: give one --precision")


def _predict(args: argparse.Namespace) -> None:
    from mcq.runtime.predict import predict_seg

    for row in predict_seg(args.images, args.model, args.out, args.threads):
        print(f"{row['image']}: {row['model_ms']:.1f} ms ({row['runtime']}) -> {row['overlay']}  "
              f"[{', '.join(row['classes'])}]")


def _analyze(args: argparse.Namespace) -> None:
    from mcq.analysis.attention_distance import analyze_attention_distance

    r = analyze_attention_distance(args.checkpoint, args.data, args.images, args.out, args.img_size)
    print(f"{r['encoder']}: mean attention distance (px) over {r['images']} images at {r['img_size']} px, "
          f"{r['heads']} heads (min / mean / max over heads)")
    for i, heads in enumerate(r["mean_distance_px"], start=1):
        print(f"layer {i:>2}: {min(heads):7.1f} {sum(heads) / len(heads):7.1f} {max(heads):7.1f}")
    print("written: " + ", ".join(r["outputs"].values()))


def _app(args: argparse.Namespace) -> int | None:
    from mcq.apps.web import serve_web_app

    if args.app_command == "reference":
        from mcq.apps.reference import write_reference
        from mcq.tasks.schema import read_sidecar

        path = write_reference(read_sidecar(args.model), args.out, args.seed)
        print(f"reference vector of {args.model} written to {path}")
        return 0

    if args.check:
        from mcq.apps.browser import check_in_browser

        r = check_in_browser(args.model, args.check, args.screenshot)
        versus = (f"{r['agreement']:.4%} of pixels agree with onnxruntime in Python" if "agreement" in r else
                  f"depth within {r['max_rel']:.2e} relative (mean {r['mean_rel']:.2e}) of onnxruntime in Python")
        print(f"{args.model} on {args.check} in headless Chromium: {versus}; {r['timeMs']:.1f} ms per image "
              f"({r['backend']}, {r['threads']} threads; first run {r['firstRunMs']:.1f} ms)"
              + (f"; screenshot {args.screenshot}" if args.screenshot else ""))
        return 0 if r["passed"] else 1

    app = serve_web_app(args.model, args.port, args.host, image="sample.jpg")
    print(f"serving {args.model} at {app.url}  (Ctrl-C stops)", flush=True)
    try:
        app.thread.join()
    finally:
        app.close()


def _tracebacks(args: argparse.Namespace, reports: list[dict]) -> None:
    """With ``--debug``: the traceback of each failure a report carries that was not one of mcq's own errors."""
    if args.debug:
        for r in reports:
            if "traceback" in r:
                print(r["traceback"], file=sys.stderr)


def _one_line(e: McqError) -> str:
    """The user's message; errors raised in a DataLoader worker arrive wrapped in a traceback text."""
    msg = str(e)
    if "Original Traceback" in msg:
        msg = msg.strip().splitlines()[-1].split("McqError: ", 1)[-1]
    return msg


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"models": _models, "data": _synth, "train": _train, "eval": _eval, "export": _export,
                "predict": _predict, "profile": _profile, "analyze": _analyze, "experiment": _experiment,
                "app": _app, "import": _import}
    try:
        rc = handlers[args.command](args)
    except McqError as e:
        if args.debug:
            raise
        print(f"mcq: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mcq: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # not one of mcq's errors, so a bug or a library's: where, and how to see more
        if args.debug:
            raise
        print(f"mcq {args.command}: unexpected {type(e).__name__}: {first_line(e)} (run again with --debug for the "
              "traceback)", file=sys.stderr)
        return 1
    except SystemExit as e:
        if type(e).__name__ != "SIGTERMException":  # Lightning's, raised with no code (exit status 0) on SIGTERM
            raise
        print("mcq: terminated (SIGTERM); an interrupted training run continues with --resume", file=sys.stderr)
        return 143
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
