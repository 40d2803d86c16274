"""The Lightning module for classification: label-smoothed cross-entropy, top-1 / top-5 accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.aggregation import SumMetric
from torchmetrics.classification import MulticlassAccuracy

from mcq.tasks.specs import task_spec
from mcq.train.module import TaskModule


class ClsTask(TaskModule):
    """``hparams``: ``model`` (ClsModelConfig as dict), ``class_names``, ``optim`` (the resolved recipe)."""

    def __init__(self, model: dict, class_names: list[str], optim: dict):
        super().__init__()
        self.save_hyperparameters()
        self.model = task_spec("cls").build_model(model)
        self.class_names = class_names
        n = len(class_names)
        self.top1 = MulticlassAccuracy(n, top_k=1, average="micro")
        self.top5 = MulticlassAccuracy(n, top_k=min(5, n), average="micro")
        self.images = SumMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = F.cross_entropy(self.model(images), labels, label_smoothing=self.hparams.optim["label_smoothing"])
        self.log_train_step(loss, images.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits = self.model(images)
        self.top1.update(logits, labels)
        self.top5.update(logits, labels)
        self.images.update(labels.numel())

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.metrics = {"top1": float(self.top1.compute()), "top5": float(self.top5.compute()),
                        "images": int(self.images.compute())}
        for m in (self.top1, self.top5, self.images):
            m.reset()
        self.log("val/top1", self.metrics["top1"], prog_bar=True, sync_dist=False)
        self.log("val/top5", self.metrics["top5"], sync_dist=False)
