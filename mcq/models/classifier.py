"""The classification model: the encoder's last map -> global average pool -> linear layer.

The linear layer stands where the CLIP projection was. ``linear_probe`` freezes the encoder (no gradients, and
eval mode throughout, so BatchNorm statistics stay as loaded); only the linear layer trains. For ViT-B/16 the map
is the trunk's own last-block tokens (the ViTDet pyramid of the dense tasks is not built).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mcq.models.encoders import Encoder, create_encoder


@dataclass
class ClsModelConfig:
    """Everything needed to rebuild a classifier; stored in every checkpoint."""

    encoder: str
    num_classes: int
    linear_probe: bool = False
    drop_path: float = 0.0


class ClsModel(nn.Module):
    def __init__(self, cfg: ClsModelConfig, encoder: Encoder | None = None):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder or create_encoder(cfg.encoder, drop_path=0.0 if cfg.linear_probe else cfg.drop_path)
        self.encoder.neck = None  # pool the trunk's last map itself
        channels = self.encoder.trunk.feature_info[self.encoder.indices[-1]]["num_chs"]
        self.fc = nn.Linear(channels, cfg.num_classes)
        if cfg.linear_probe:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> "ClsModel":
        super().train(mode)
        if self.cfg.linear_probe:
            self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.encoder(x)[-1].mean((2, 3)))
