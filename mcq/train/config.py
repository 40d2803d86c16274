"""``TrainConfig``: what ``mcq train TASK`` takes, as plain data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """What ``mcq train TASK`` takes. ``None`` means: the recipe's value."""

    task: str = "seg"
    backbone: str = "mci2"
    data: str | None = None
    head: str = ""
    linear_probe: bool = False
    freeze_encoder: bool = False  # seg: train the neck and heads on a frozen encoder
    init: str | None = None
    init_partial: bool = False
    qat: bool = False
    max_steps: int | None = None
    batch_size: int | None = None
    img_size: int | None = None
    lr: float | None = None
    drop_path: float | None = None
    crop_scale: list[float] | None = None
    layer_decay: float | None = None
    val_every: int | None = None
    fpn_channels: int | None = None
    roi_batch_size: int | None = None
    workers: int = 2
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    precision: str | None = None
    out: str | None = None
    resume: bool = False
    exist_ok: bool = False
    seed: int = 0
    # clip only
    model: str | None = None
    val_data: str | None = None
    captions: str = "gt,syn"
    distill: bool = False
    text_width: int | None = None
    text_layers: int | None = None


CLIP_OPTIONS = ("model", "val_data", "captions", "distill", "text_width", "text_layers")
