"""UperNet (Xiao et al., "Unified Perceptual Parsing"): mmseg's ``UPerHead``, a pyramid pooling module on the last
level and an FPN whose levels are fused by one 3x3 conv."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mcq.models.heads.conv_module import ConvModule
from mcq.models.heads.decode_head import DecodeHead


class PPM(nn.ModuleList):
    """Pyramid pooling (PSPNet): average-pooled to each scale, 1x1 conv + BN + ReLU, upsampled back."""

    def __init__(self, pool_scales: Sequence[int], in_channels: int, channels: int):
        super().__init__(nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvModule(in_channels, channels, 1))
                         for scale in pool_scales)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.interpolate(ppm(x), size=x.shape[2:], mode="bilinear", align_corners=False) for ppm in self]


class UPerHead(DecodeHead):
    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 512,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1):
        super().__init__(channels, num_classes, dropout)
        self.psp_modules = PPM(pool_scales, in_channels[-1], channels)
        self.bottleneck = ConvModule(in_channels[-1] + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        top = inputs[-1]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        laterals.append(self.bottleneck(torch.cat([top, *self.psp_modules(top)], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        outs = [outs[0], *(_resize(x, outs[0]) for x in outs[1:])]
        return self.cls_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))


def _resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)
