"""The segmentation model: encoder -> decoder -> classifier, logits at input resolution."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
import torch.nn.functional as F

from mcq.errors import McqError
from mcq.models.encoders import Encoder, create_encoder, encoder_info
from mcq.models.heads import DECODERS


@dataclass
class SegModelConfig:
    """Everything needed to rebuild a segmentation model; stored in every checkpoint."""

    encoder: str
    num_classes: int
    head: str = ""  # "" picks the encoder's default ("fpn" for MCi, "upernet" for ViT/Swin)
    drop_path: float = 0.0
    dropout: float = 0.1

    def __post_init__(self) -> None:
        self.head = self.head or encoder_info(self.encoder).default_head
        if self.head not in DECODERS:
            raise McqError(f"unknown head {self.head!r}; known: {', '.join(DECODERS)}")

    def to_dict(self) -> dict:
        return asdict(self)


class SegModel(nn.Module):
    def __init__(self, cfg: SegModelConfig, encoder: Encoder | None = None):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder or create_encoder(cfg.encoder, drop_path=cfg.drop_path)
        self.decoder = DECODERS[cfg.head](self.encoder.channels, self.encoder.strides)
        self.classifier = nn.Sequential(nn.Dropout2d(cfg.dropout), nn.Conv2d(self.decoder.out_channels, cfg.num_classes, 1))
        self.output_stride = min(self.encoder.strides)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.decoder(self.encoder(x)))
        return F.interpolate(logits, scale_factor=self.output_stride, mode="bilinear", align_corners=False)

    def check_input_size(self, height: int, width: int) -> None:
        """Raise a one-line error unless the model can take an image of this size."""
        self.encoder.check_input_size(height, width)


def create_seg_model(encoder: str, num_classes: int, head: str = "", drop_path: float = 0.0) -> SegModel:
    return SegModel(SegModelConfig(encoder=encoder, num_classes=num_classes, head=head, drop_path=drop_path))
