"""SemanticFPN (Kirillov et al., "Panoptic Feature Pyramid Networks"): mmseg's ``FPN`` neck and ``FPNHead``."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mcq.models.heads.conv_module import ConvModule
from mcq.models.heads.decode_head import DecodeHead


class FPN(nn.Module):
    """1x1 lateral convs, a top-down path of nearest upsampling and sums, a 3x3 conv per level (with biases, no
    norm or activation); as many outputs as inputs (mmseg's ``num_outs=len(in_channels)``)."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256):
        super().__init__()
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1, norm=False) for c in in_channels)
        self.fpn_convs = nn.ModuleList(ConvModule(out_channels, out_channels, 3, norm=False) for _ in in_channels)
        self.out_channels = [out_channels] * len(in_channels)

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            top_down = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
            laterals[i - 1] = laterals[i - 1] + top_down
        return [conv(x) for conv, x in zip(self.fpn_convs, laterals)]


class FPNHead(DecodeHead):
    """Every level brought to the finest stride by 3x3 conv + BN + ReLU and 2x bilinear upsampling, one pair per
    octave (one conv at the finest level), summed and classified."""

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int], num_classes: int, channels: int = 128,
                 dropout: float = 0.1):
        super().__init__(channels, num_classes, dropout)
        self.scale_heads = nn.ModuleList()
        for i, (c, stride) in enumerate(zip(in_channels, strides)):
            layers: list[nn.Module] = []
            for k in range(max(1, int(math.log2(stride / strides[0])))):
                layers.append(ConvModule(c if k == 0 else channels, channels, 3))
                if i:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        out = self.scale_heads[0](inputs[0])
        for head, x in zip(self.scale_heads[1:], inputs[1:]):
            y = head(x)
            if y.shape[2:] != out.shape[2:]:  # mmseg resizes every level to the first; equal at strides 2^k
                y = F.interpolate(y, size=out.shape[2:], mode="bilinear", align_corners=False)
            out = out + y
        return self.cls_seg(out)
