"""The Lightning module for detection and instance segmentation: Mask R-CNN's losses (torchvision's) and COCO's box
and mask AP (pycocotools' COCOeval against the validation set's own annotation file)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from mcq.tasks.metrics import coco_metrics, coco_results
from mcq.tasks.specs import task_spec
from mcq.train.module import TaskModule


class DetTask(TaskModule):
    """``hparams``: ``model`` (DetModelConfig as dict), ``class_names`` and their COCO ``category_ids``, ``optim``
    (the resolved recipe) and the classes' ``palette`` where one came with them (an imported mmdet checkpoint's)."""

    def __init__(self, model: dict, class_names: list[str], category_ids: list[int], optim: dict,
                 palette: list[list[int]] | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.model = task_spec("det").build_model(model)
        self.class_names, self.category_ids, self.palette = class_names, category_ids, palette
        self._results: list[dict] = []
        self._image_ids: list[int] = []

    def forward(self, images: list[torch.Tensor]) -> list[dict]:
        return self.model(images)

    def training_step(self, batch, batch_idx):
        images, targets = batch
        losses = self.model(images, [{k: t[k] for k in ("boxes", "labels", "masks")} for t in targets])
        loss = sum(losses.values())
        for name, value in losses.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=False)
        self.log_train_step(loss, len(images))
        return loss

    def validation_step(self, batch, batch_idx):
        images, targets = batch
        for pred, target in zip(self.model(images), targets):
            self._results += coco_results(pred, target["image_id"], self.category_ids)
            self._image_ids.append(target["image_id"])

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        results, image_ids = self._results, self._image_ids
        self._results, self._image_ids = [], []
        if dist.is_available() and dist.is_initialized():  # every rank scores the whole validation set
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, (results, image_ids))
            results, image_ids = _merge(gathered)
        gt = self.trainer.val_dataloaders.dataset.coco
        self.metrics = coco_metrics(gt, results, image_ids)
        for t in ("bbox", "segm"):
            self.log(f"val/{t}_AP", self.metrics[t]["AP"] or 0.0, prog_bar=True, sync_dist=False)
            self.log(f"val/{t}_AP50", self.metrics[t]["AP50"] or 0.0, sync_dist=False)


def _merge(gathered: list[tuple[list[dict], list[int]]]) -> tuple[list[dict], list[int]]:
    """The ranks' results, each image once (the distributed sampler repeats images to even out the ranks)."""
    results, seen = [], set()
    for rank_results, rank_ids in gathered:
        new = set(rank_ids) - seen
        results += [r for r in rank_results if r["image_id"] in new]
        seen |= new
    return results, sorted(seen)
