"""The Lightning module for depth: scale-invariant log loss (GLPDepth's SILog) and the NYUv2 metrics."""

from __future__ import annotations

import torch

from mcq.tasks.metrics import MIN_DEPTH, DepthMetrics
from mcq.tasks.specs import task_spec
from mcq.train.module import TaskModule


def silog_loss(pred: torch.Tensor, gt: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """sqrt(mean(d^2) - lam * mean(d)^2) with d = log(pred) - log(gt), over matching tensors of valid pixels."""
    d = pred.clamp(min=MIN_DEPTH).log() - gt.log()
    return ((d**2).mean() - lam * d.mean() ** 2).clamp(min=0).sqrt()


class DepthTask(TaskModule):
    """``hparams``: ``model`` (DepthModelConfig as dict), ``optim`` (the resolved recipe)."""

    def __init__(self, model: dict, optim: dict):
        super().__init__()
        self.save_hyperparameters()
        self.model = task_spec("depth").build_model(model)
        self.depth_metrics = DepthMetrics(max_depth=self.model.cfg.max_depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        images, depths = batch
        pred, gt = self.model(images)[:, 0], torch.stack(depths)
        valid = (gt > MIN_DEPTH) & (gt < self.model.cfg.max_depth)
        loss = silog_loss(pred[valid], gt[valid], self.hparams.optim["silog_lambda"]) if valid.any() else pred.sum() * 0
        self.log_train_step(loss, images.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        images, depths = batch
        self.depth_metrics.update(self.model(images), depths)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.metrics = self.depth_metrics.compute()
        self.depth_metrics.reset()
        for key in ("rmse", "abs_rel", "d1"):
            value = self.metrics[key]
            self.log(f"val/{key}", float("nan") if value is None else value, prog_bar=key == "rmse", sync_dist=False)
