"""What every task's LightningModule shares: step logging (loss, lr, images/s), AdamW with the recipe's schedule,
and layer-wise learning-rate decay over the encoder's trunk."""

from __future__ import annotations

import math
import time

import lightning as L
import torch
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from torch import nn


def warmup_poly(step: int, total: int, warmup: int, power: float, min_ratio: float) -> float:
    """LR multiplier: linear warm-up, then polynomial decay to ``min_ratio`` (mmseg's PolyLR)."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(step, total) / max(total, 1)
    return (1 - min_ratio) * (1 - t) ** power + min_ratio


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up, then cosine decay to ``min_ratio`` (timm's CosineLRScheduler)."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(step - warmup, total - warmup) / max(total - warmup, 1)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def half_cycle(step: int, total: int, power: float, min_ratio: float) -> float:
    """LR multiplier of GLPDepth / "Dark Secrets of MIM" depth training: from ``min_ratio`` up to 1 over the first
    half of the run (``t ** power``), then back down to ``min_ratio`` over the second half."""
    half = max(total // 2, 1)
    t = min(step, total) / half
    if t < 1:
        return (1 - min_ratio) * t ** power + min_ratio
    return max(min_ratio, 1 - (1 - min_ratio) * (t - 1) ** power)


def warmup_step(step: int, total: int, warmup: int, milestones: list[float], gamma: float) -> float:
    """LR multiplier: linear warm-up, then ``gamma`` once per milestone passed (milestones as fractions of ``total``;
    mmdet's step schedule, e.g. the 1x schedule's drops after epochs 8 and 11 of 12)."""
    if step < warmup:
        return (step + 1) / warmup
    return gamma ** sum(step >= round(m * total) for m in milestones)


def lr_multiplier(optim: dict, step: int) -> float:
    """The recipe's schedule (``optim["schedule"]``) at ``step``; ``optim`` is a resolved recipe as a dict."""
    total, warmup = optim["max_steps"], optim["warmup_steps"]
    min_ratio = optim["min_lr"] / optim["lr"] if optim["lr"] else 0.0
    if optim["schedule"] == "poly":
        return warmup_poly(step, total, warmup, optim["poly_power"], min_ratio)
    if optim["schedule"] == "cosine":
        return warmup_cosine(step, total, warmup, min_ratio)
    if optim["schedule"] == "half_cycle":
        return half_cycle(step, total, optim["poly_power"], min_ratio)
    if optim["schedule"] == "step":
        return warmup_step(step, total, warmup, [e / optim["epochs"] for e in optim["lr_steps"]], optim["lr_gamma"])
    raise ValueError(f"unknown schedule {optim['schedule']!r}")


def layer_decay_groups(model: nn.Module, trunk: nn.Module, lr: float, weight_decay: float, decay: float) -> list[dict]:
    """AdamW groups: the trunk's layers at ``lr * decay ** depth_from_top`` (timm's ``param_groups_layer_decay``,
    from the trunk's own ``group_matcher``), everything outside the trunk (neck, decoder, head) at ``lr``."""
    no_wd = getattr(trunk, "no_weight_decay", lambda: ())()
    groups = param_groups_layer_decay(trunk, weight_decay, no_weight_decay_list=no_wd, layer_decay=decay)
    in_trunk = {id(p) for p in trunk.parameters()}
    rest = nn.ParameterList(p for p in model.parameters() if id(p) not in in_trunk and p.requires_grad)
    groups += param_groups_weight_decay(nn.ModuleDict({"rest": rest}), weight_decay)
    for g in groups:
        g["lr"] = lr * g.pop("lr_scale", 1.0)
    return [g for g in groups if g["params"]]


class TaskModule(L.LightningModule):
    """Base of the task modules: subclasses set ``self.model`` and implement the steps; ``hparams.optim`` is the
    resolved recipe (lr, betas, weight_decay, schedule, max_steps, warmup_steps, ...)."""

    model: nn.Module
    metrics: dict | None = None  # the last validation's figures
    _tick: float | None = None

    def log_train_step(self, loss: torch.Tensor, batch_size: int) -> None:
        """Log the loss, the peak lr (the head's, under layer-wise decay) and the global images/s of this step."""
        now = time.perf_counter()
        if self._tick is not None:
            self.log("img_s", batch_size * self.trainer.world_size / (now - self._tick), prog_bar=True, on_step=True,
                     on_epoch=False)
        self._tick = now
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self.log("lr", max(g["lr"] for g in self.optimizers().param_groups), on_step=True, on_epoch=False)

    def on_validation_epoch_end(self) -> None:
        self._tick = None  # validation time is not training time

    def param_groups(self) -> list[dict]:
        """AdamW parameter groups; layer-wise lr decay over the trunk when the recipe has ``layer_decay``."""
        o = self.hparams.optim
        if o.get("layer_decay"):
            return layer_decay_groups(self.model, self.model.encoder.trunk, o["lr"], o["weight_decay"],
                                      o["layer_decay"])
        return param_groups_weight_decay(self.model, o["weight_decay"])

    def configure_optimizers(self):
        o = self.hparams.optim
        opt = torch.optim.AdamW(self.param_groups(), lr=o["lr"], betas=tuple(o["betas"]))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(o, s))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
