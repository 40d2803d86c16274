"""The Lightning module for semantic segmentation: loss and validation metrics (optimizer: ``TaskModule``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassConfusionMatrix

from mcq.data.ade20k import IGNORE_INDEX
from mcq.tasks.metrics import accumulate, seg_metrics
from mcq.tasks.specs import task_spec
from mcq.train.module import TaskModule


class SegTask(TaskModule):
    """``hparams``: ``model`` (SegModelConfig as dict), ``class_names``, ``optim`` (the resolved recipe) and the
    classes' ``palette`` where one came with them (an imported mmseg checkpoint's)."""

    def __init__(self, model: dict, class_names: list[str], optim: dict, palette: list[list[int]] | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.model = task_spec("seg").build_model(model)
        self.class_names = class_names
        self.palette = palette
        self.confusion = MulticlassConfusionMatrix(len(class_names), ignore_index=IGNORE_INDEX)
        self.metrics: dict | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        images, masks = batch
        target = torch.stack(masks)
        logits, aux = self.model.forward_train(images)
        loss = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
        if aux is not None:  # mmseg's auxiliary loss: the same cross-entropy, weighted
            aux_loss = self.hparams.optim["aux_loss_weight"] * F.cross_entropy(aux, target, ignore_index=IGNORE_INDEX)
            self.log("train/aux_loss", aux_loss, on_step=True, on_epoch=False)
            loss = loss + aux_loss
        self.log_train_step(loss, images.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        images, masks = batch
        accumulate(self.confusion, self.model(images), masks)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.metrics = seg_metrics(self.confusion.compute().cpu(), self.class_names)
        self.confusion.reset()
        for key in ("mIoU", "mAcc", "aAcc"):
            self.log(f"val/{key}", self.metrics[key] or 0.0, prog_bar=key == "mIoU", sync_dist=False)
