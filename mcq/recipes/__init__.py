"""The paper's recipes as plain data: one JSON file per task (+ head or variant) (../shared/paper.md, Tables 11-15).

Segmentation recipes count iterations (``max_steps``); depth and classification recipes count epochs, and their
``max_steps`` / ``warmup_steps`` are derived from the dataset size (``Recipe.resolve``) unless overridden
(``--max-steps``, the CPU override, keeps the warm-up's share of the run).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from importlib import resources

from mcq.errors import McqError


@dataclass(frozen=True)
class Recipe:
    """What every task's recipe has: AdamW's settings, schedule, augmentation, stochastic depth."""

    source: str
    task: str
    img_size: int
    batch_size: int
    lr: float
    betas: list[float]
    weight_decay: float
    schedule: str  # "poly", "cosine", "half_cycle" or "step" (see mcq.train.module.lr_multiplier)
    min_lr: float
    drop_path: float
    crop_scale: list[float]
    crop_ratio: list[float]
    max_steps: int | None
    warmup_steps: int
    val_every: int | None

    def resolve(self, steps_per_epoch: int) -> "Recipe":
        """The recipe with ``max_steps``, ``warmup_steps`` and ``val_every`` in iterations
        (iteration recipes: as is)."""
        return self


@dataclass(frozen=True)
class SegRecipe(Recipe):
    head: str
    poly_power: float
    aux_loss_weight: float  # the auxiliary head's share of the loss (UperNet's FCNHead: 0.4; no auxiliary head: 0)


@dataclass(frozen=True)
class EpochRecipe(Recipe):
    epochs: int
    warmup_epochs: float

    def resolve(self, steps_per_epoch: int) -> "EpochRecipe":
        full = self.epochs * steps_per_epoch
        total = self.max_steps or full
        warmup = round(total * self.warmup_epochs / self.epochs)  # a shortened run keeps the warm-up's share
        return replace(self, max_steps=total, warmup_steps=warmup,
                       val_every=self.val_every or min(steps_per_epoch, total))


@dataclass(frozen=True)
class DepthRecipe(EpochRecipe):
    layer_decay: float
    poly_power: float
    max_depth: float
    silog_lambda: float


@dataclass(frozen=True)
class ClsRecipe(EpochRecipe):
    linear_probe: bool
    label_smoothing: float
    ema: float | None  # decay of the weights' exponential moving average (mcq.train.ema); None: no EMA


@dataclass(frozen=True)
class DetRecipe(EpochRecipe):
    lr_steps: list[float]  # epochs after which the lr is multiplied by lr_gamma (a shortened run keeps their share)
    lr_gamma: float
    fpn_channels: int
    roi_batch_size: int


@dataclass(frozen=True)
class ClipRecipe(Recipe):
    context_length: int  # tokens per caption
    ema: float | None
    shuffle_buffer: int  # samples held by the streaming shuffle of the training shards
    distill_weight: float  # --distill: loss = (1 - w) * contrastive + w * distillation (MobileCLIP's lambda)
    distill_logit_scale: float  # the teacher's inverse temperature over its stored embeddings
    schedule_steps: int  # the recipe's run length, over which warmup_steps is given

    def resolve(self, steps_per_epoch: int) -> "ClipRecipe":
        """A run shortened (or lengthened) by ``--max-steps`` keeps the warm-up's share (2k of 200k)."""
        return replace(self, warmup_steps=round(self.warmup_steps * self.max_steps / self.schedule_steps))


RECIPES: dict[str, type[Recipe]] = {"seg": SegRecipe, "depth": DepthRecipe, "cls": ClsRecipe, "det": DetRecipe,
                                    "clip": ClipRecipe}


def quantization_aware(recipe: Recipe) -> Recipe:
    """``recipe`` as the short fine-tune of quantization-aware training (``qat.json``): a share of its steps (or
    epochs), no warm-up, a cosine from a share of its learning rate; no layer-wise decay or EMA (the trained graph
    has no layers to decay by, and its fake quantizers' ranges are not averaged)."""
    qat = json.loads(resources.files("mcq.recipes").joinpath("qat.json").read_text())
    lr = recipe.lr * qat["lr_share"]
    changes = dict(lr=lr, min_lr=lr * qat["min_lr_share"], schedule=qat["schedule"], warmup_steps=0,
                   max_steps=recipe.max_steps and max(1, round(recipe.max_steps * qat["schedule_share"])))
    if isinstance(recipe, EpochRecipe):
        changes.update(epochs=max(1, round(recipe.epochs * qat["schedule_share"])), warmup_epochs=0)
    changes.update({k: None for k in ("layer_decay", "ema") if hasattr(recipe, k)})
    return replace(recipe, **changes)


def load_recipe(task: str, variant: str = "") -> Recipe:
    """The shipped recipe ``TASK_VARIANT.json`` (``TASK.json`` without a variant), e.g. ``load_recipe("seg", "fpn")``,
    ``load_recipe("depth")``, ``load_recipe("cls", "linear_probe")``, ``load_recipe("det", "maskrcnn")``,
    ``load_recipe("clip")``."""
    name = f"{task}_{variant}" if variant else task
    path = resources.files("mcq.recipes").joinpath(f"{name}.json")
    if not path.is_file() or task not in RECIPES:
        raise McqError(f"no recipe for task {task!r}" + (f" with {variant!r}" if variant else ""))
    data = json.loads(path.read_text())
    kind = RECIPES[task]
    return kind(**{f.name: data.get(f.name) for f in fields(kind)})
