"""Training images/s through `mcq train` (the Lightning engine) vs a bare PyTorch loop, side by side.

Same model (SemanticFPN on mci0 / mci2), batch, image size and optimizer (AdamW over the same parameter
groups, same LR schedule); the bare loop's data is already in memory, the engine reads and augments it
from disk in its workers. Runs are ordered bare, engine, engine, bare so that drift in the machine's speed
cancels; each column is the mean of its two runs. The ratio engine/bare is the engine's overhead (>= 0.9 is
the goal).

    .venv/bin/python benchmarks/train_throughput.py [--img-size 512] [--batch-size 4] [--steps 6] [--warmup 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import asdict, replace

import lightning as L
import torch
import torch.nn.functional as F

from mcq.data import ADE20K, IGNORE_INDEX, SegTransform, collate_seg, synth_seg
from mcq.train.seg_module import SegTask
from mcq.train.config import TrainConfig
from mcq.train.train import resolve_recipe, train


class StepClock(L.Callback):
    """Wall-clock time at the end of every training step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.ends.append(time.perf_counter())
        self.threads = torch.get_num_threads()


def images_per_s(ends: list[float], warmup: int, batch: int) -> float:
    timed = ends[warmup:]
    return batch * (len(timed) - 1) / (timed[-1] - timed[0])


def through_engine(cfg: TrainConfig, warmup: int) -> float:
    clock = StepClock()
    train(cfg, callbacks=[clock])
    assert clock.threads == torch.get_num_threads(), "the engine changed the thread count"
    return images_per_s(clock.ends, warmup, cfg.batch_size)


def bare_loop(cfg: TrainConfig, warmup: int) -> float:
    recipe = resolve_recipe(cfg)
    L.seed_everything(cfg.seed, verbose=False)
    ds = ADE20K(cfg.data, "training")
    task = SegTask(model=dict(encoder=cfg.backbone, num_classes=ds.num_classes, head=recipe.head,
                              drop_path=recipe.drop_path), class_names=ds.class_names, optim=asdict(recipe))
    enc = task.model.encoder
    ds.transform = SegTransform(recipe.img_size, True, enc.mean, enc.std, recipe.crop_scale, recipe.crop_ratio)
    batches = [collate_seg([ds[(i * cfg.batch_size + j) % len(ds)] for j in range(cfg.batch_size)])
               for i in range(cfg.max_steps)]
    opt_cfg = task.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    model = task.model.train()
    ends = []
    for images, masks in batches:
        loss = F.cross_entropy(model(images), torch.stack(masks), ignore_index=IGNORE_INDEX)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        ends.append(time.perf_counter())
    return images_per_s(ends, warmup, cfg.batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", default="mci0,mci2")
    ap.add_argument("--img-size", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"{args.img_size}x{args.img_size}, batch {args.batch_size}, {args.steps} steps ({args.warmup} warm-up)")
    with tempfile.TemporaryDirectory() as tmp:
        data = synth_seg(f"{tmp}/data", n_train=args.batch_size * 4, n_val=1, size=args.img_size)
        rows = []
        for backbone in args.backbones.split(","):
            cfg = TrainConfig(backbone=backbone, data=str(data), max_steps=args.steps, batch_size=args.batch_size,
                                 img_size=args.img_size, val_every=args.steps, workers=args.workers,
                                 accelerator="cpu", precision="32-true", out=f"{tmp}/run-{backbone}")
            runs = {"bare": [], "engine": []}
            for i, kind in enumerate(("bare", "engine", "engine", "bare")):
                measure = bare_loop if kind == "bare" else through_engine
                runs[kind].append(measure(replace(cfg, out=f"{cfg.out}-{i}"), args.warmup))
            rows.append((backbone, sum(runs["engine"]) / 2, sum(runs["bare"]) / 2))
    print(f"\n{'backbone':<9} {'mcq train img/s':>16} {'bare loop img/s':>16} {'ratio':>6}")
    for backbone, engine, bare in rows:
        print(f"{backbone:<9} {engine:>16.3f} {bare:>16.3f} {engine / bare:>6.3f}")


if __name__ == "__main__":
    main()
