"""The depth model: encoder -> the depth head of "Revealing the Dark Secrets of Masked Image Modeling" (Xie et al.;
GLPDepth's code) on the encoder's last map -> depth in metres at input resolution.

Head: three 2x deconvolutions (BN, ReLU), a 3x3 conv (BN, ReLU), bilinear upsampling to input size, two 3x3
convs, and ``sigmoid * max_depth``. For a stride-32 encoder this is the paper's head exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from mcq.models.encoders import Encoder, create_encoder


@dataclass
class DepthModelConfig:
    """Everything needed to rebuild a depth model; stored in every checkpoint."""

    encoder: str
    max_depth: float = 10.0
    drop_path: float = 0.0
    num_deconv: int = 3
    num_filters: int = 32


def _bn_relu(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class DepthHead(nn.Module):
    """Deconvolutions from the last map, then convolutions at input resolution; returns N x 1 x H x W metres."""

    def __init__(self, in_channels: int, stride: int, cfg: DepthModelConfig):
        super().__init__()
        layers, ch, f = [], in_channels, cfg.num_filters
        for _ in range(cfg.num_deconv):
            layers += _bn_relu(nn.ConvTranspose2d(ch, f, 2, stride=2, bias=False), f)
            ch = f
        layers += _bn_relu(nn.Conv2d(f, f, 3, padding=1, bias=False), f)
        self.decode = nn.Sequential(*layers)
        self.upscale = stride // 2**cfg.num_deconv
        self.predict = nn.Sequential(nn.Conv2d(f, f, 3, padding=1), nn.ReLU(inplace=True),
                                     nn.Conv2d(f, 1, 3, padding=1))
        self.max_depth = cfg.max_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.decode(x), scale_factor=self.upscale, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.predict(x)) * self.max_depth


class DepthModel(nn.Module):
    def __init__(self, cfg: DepthModelConfig, encoder: Encoder | None = None):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder or create_encoder(cfg.encoder, drop_path=cfg.drop_path)
        self.head = DepthHead(self.encoder.channels[-1], self.encoder.strides[-1], cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x)[-1])
