"""The Lightning module for CLIP pretraining: open_clip's model and ``ClipLoss`` (features gathered across DDP ranks
as open_clip's training does), applied to each caption kind of a batch (DataCompDR: the ground-truth caption and one
synthetic caption per image) and averaged; with ``--distill``, open_clip's ``DistillClipLoss`` against the stored
teacher embeddings (cross-entropy between the teacher's and the student's image-text similarity distributions,
MobileCLIP's distillation loss). Validation: image->text and text->image recall@1/5.

The module also keeps where each training stream stands (``consumed``: per ``"rank/worker"``, the pass that stream
is in and the raw samples of it consumed; ``batches``: per rank, the batches taken) and saves it in the checkpoint
(``clip_stream``), so that ``--resume`` continues the shard stream exactly (``mcq.data.clip_shards.TrainSamples``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from open_clip import ClipLoss, DistillClipLoss

from mcq.data.clip_shards import TrainSamples
from mcq.tasks.metrics import retrieval_recall
from mcq.tasks.specs import task_spec
from mcq.train.module import TaskModule


def multi_caption_loss(loss_fn: ClipLoss, image_features: torch.Tensor, text_features: dict[str, torch.Tensor],
                       logit_scale: torch.Tensor, teacher: dict[str, torch.Tensor] | None = None,
                       distill_weight: float = 0.0, teacher_scale: float = 100.0) -> torch.Tensor:
    """The mean over caption kinds (``text_features``: kind -> [B, d], paired row by row with ``image_features``) of
    ``loss_fn``'s CLIP loss; with ``teacher`` (``"image"`` and one entry per kind, normalised embeddings) and a
    ``DistillClipLoss``: ``(1 - distill_weight) * contrastive + distill_weight * distillation`` per kind."""
    losses = []
    for kind, text in text_features.items():
        if teacher is None:
            losses.append(loss_fn(image_features, text, logit_scale))
        else:
            contrastive, distill = loss_fn(image_features, text, logit_scale, teacher["image"], teacher[kind],
                                           teacher_scale)
            losses.append((1 - distill_weight) * contrastive + distill_weight * distill)
    return torch.stack(losses).mean()


class ClipTask(TaskModule):
    """``hparams``: ``model`` (``name``, ``cfg``: the open_clip config, ``img_size``, ``captions``, ``distill``) and
    ``optim`` (the resolved recipe)."""

    def __init__(self, model: dict, optim: dict):
        super().__init__()
        self.save_hyperparameters()
        self.model = task_spec("clip").build_model(model)
        self.captions = tuple(model["captions"])
        self.distill = bool(model["distill"])
        self.loss_fn: ClipLoss = self._loss(rank=0, world_size=1)
        self.skipped = 0
        self._val: dict[str, list[torch.Tensor]] = {}
        self.stream: TrainSamples | None = None  # the training stream's first stage, set by the task spec
        self.consumed: dict[str, list[int]] = {}  # "rank/worker" -> [pass, raw samples of it consumed]
        self.batches: dict[str, int] = {}  # "rank" -> batches that rank has taken

    def _loss(self, rank: int, world_size: int) -> ClipLoss:
        kind = DistillClipLoss if self.distill else ClipLoss
        return kind(local_loss=True, gather_with_grad=True, cache_labels=True, rank=rank, world_size=world_size)

    def setup(self, stage: str) -> None:
        self.loss_fn = self._loss(self.trainer.global_rank, self.trainer.world_size)

    def features(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Normalised image features and, per caption kind, normalised text features (one text pass for all)."""
        images = self.model.encode_image(batch["image"], normalize=True).float()
        texts = self.model.encode_text(torch.cat([batch[k] for k in self.captions]), normalize=True).float()
        return images, dict(zip(self.captions, texts.split(images.shape[0])))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images, texts = self.features(batch)
        teacher = None
        if self.distill:
            teacher = {"image": F.normalize(batch["teacher_image"], dim=-1),
                       **{k: F.normalize(batch[f"teacher_{k}"], dim=-1) for k in self.captions}}
        o = self.hparams.optim
        loss = multi_caption_loss(self.loss_fn, images, texts, self.model.logit_scale.exp(), teacher,
                                  o["distill_weight"], o["distill_logit_scale"])
        self.skipped += int(batch["skipped"])
        self.track_stream(batch)
        self.log_train_step(loss, images.shape[0])
        self.log("logit_scale", self.model.logit_scale.exp(), on_step=True, on_epoch=False)
        return loss

    def track_stream(self, batch: dict) -> None:
        """Record where this batch's stream stands, for every rank (gathered: rank 0 writes the checkpoint)."""
        here = torch.tensor([batch["worker"], batch["pass"], batch["consumed"]], device=self.device)
        rows = self.all_gather(here).reshape(-1, 3) if self.trainer.world_size > 1 else here[None]
        for rank, (worker, pass_, consumed) in enumerate(rows.tolist()):
            self.consumed[f"{rank}/{worker}"] = [pass_, consumed]
            self.batches[str(rank)] = self.batches.get(str(rank), 0) + 1

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["clip_stream"] = {"consumed": self.consumed, "batches": self.batches,
                                     "world": self.trainer.world_size}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("clip_stream")
        if state is None or self.stream is None:
            return
        if state["world"] != self.trainer.world_size:
            rank_zero_warn(f"the checkpoint's run had {state['world']} processes, this one {self.trainer.world_size}: "
                           "the shard stream restarts from its beginning")
            return
        self.consumed, self.batches = dict(state["consumed"]), dict(state["batches"])
        self.stream.skip = self.consumed
        self.stream.batches = self.batches.get(str(self.trainer.global_rank), 0)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        with torch.no_grad():  # as open_clip's training loop: the temperature stays above 1/100
            self.model.logit_scale.clamp_(0, math.log(100))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        images, texts = self.features(batch)
        self._val.setdefault("image", []).append(images)
        for k, t in texts.items():
            self._val.setdefault(k, []).append(t)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if not self._val:
            return
        images = torch.cat(self._val.pop("image"))
        recall = {k: retrieval_recall(images @ torch.cat(t).T) for k, t in self._val.items()}
        self._val = {}
        skipped = self.trainer.strategy.reduce(torch.tensor(float(self.skipped), device=self.device), reduce_op="sum")
        r1 = sum(m["i2t_R@1"] + m["t2i_R@1"] for m in recall.values()) / (2 * len(recall))
        self.metrics = {"R@1": r1, "recall": recall, "pairs": images.shape[0], "skipped_images": int(skipped)}
        self.log("val/R@1", r1, prog_bar=True, sync_dist=False)
        for kind, m in recall.items():
            for name, v in m.items():
                self.log(f"val/{kind}_{name}", v, sync_dist=False)
