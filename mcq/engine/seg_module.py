"""The Lightning module for semantic segmentation: loss, optimizer and schedule, validation metrics."""

from __future__ import annotations

import time

import lightning as L
import torch
import torch.nn.functional as F
from timm.optim import param_groups_weight_decay
from torchmetrics.classification import MulticlassConfusionMatrix

from mcq.data.ade20k import IGNORE_INDEX
from mcq.engine.metrics import accumulate, seg_metrics
from mcq.models.segmentor import SegModel, SegModelConfig


def warmup_poly(step: int, total: int, warmup: int, power: float, min_ratio: float) -> float:
    """LR multiplier: linear warm-up, then polynomial decay to ``min_ratio`` (mmseg's PolyLR)."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(step, total) / max(total, 1)
    return (1 - min_ratio) * (1 - t) ** power + min_ratio


class SegTask(L.LightningModule):
    """``hparams``: ``model`` (SegModelConfig as dict), ``class_names``, ``optim`` (lr, betas, ...)."""

    def __init__(self, model: dict, class_names: list[str], optim: dict):
        super().__init__()
        self.save_hyperparameters()
        self.model = SegModel(SegModelConfig(**model))
        self.class_names = class_names
        self.confusion = MulticlassConfusionMatrix(len(class_names), ignore_index=IGNORE_INDEX)
        self.metrics: dict | None = None
        self._tick: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        images, masks = batch
        logits = self.model(images)
        loss = F.cross_entropy(logits, torch.stack(masks), ignore_index=IGNORE_INDEX)
        now = time.perf_counter()
        if self._tick is not None:
            ips = images.shape[0] * self.trainer.world_size / (now - self._tick)
            self.log("img_s", ips, prog_bar=True, on_step=True, on_epoch=False)
        self._tick = now
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx):
        images, masks = batch
        logits = self.model(images)
        accumulate(self.confusion, logits, masks)

    def on_validation_epoch_end(self) -> None:
        self.metrics = seg_metrics(self.confusion.compute().cpu(), self.class_names)
        self.confusion.reset()
        for key in ("mIoU", "mAcc", "aAcc"):
            self.log(f"val/{key}", self.metrics[key] or 0.0, prog_bar=key == "mIoU", sync_dist=False)
        self._tick = None

    def configure_optimizers(self):
        o = self.hparams.optim
        groups = param_groups_weight_decay(self.model, o["weight_decay"])
        opt = torch.optim.AdamW(groups, lr=o["lr"], betas=tuple(o["betas"]))
        total, warmup = o["max_steps"], o["warmup_steps"]
        min_ratio = o["min_lr"] / o["lr"] if o["lr"] else 0.0
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_poly(s, total, warmup, o["poly_power"], min_ratio)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
