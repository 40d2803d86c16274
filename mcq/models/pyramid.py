"""ViTDet's simple feature pyramid: strides 4/8/16/32 built from the last block's stride-16 map."""

from __future__ import annotations

import torch
from torch import nn
from timm.layers import LayerNorm2d


def _out_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 1, bias=False), LayerNorm2d(out_ch),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), LayerNorm2d(out_ch),
    )


class SimpleFeaturePyramid(nn.Module):
    """Li et al., "Exploring Plain Vision Transformer Backbones for Object Detection" (ViTDet), Sec. 3."""

    def __init__(self, dim: int, patch_stride: int = 16, out_channels: int = 256):
        super().__init__()
        up4 = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), LayerNorm2d(dim // 2), nn.GELU(),
            nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2),
        )
        self.scales = nn.ModuleList([up4, nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), nn.Identity(),
                                     nn.MaxPool2d(2)])
        self.outs = nn.ModuleList(_out_conv(c, out_channels) for c in (dim // 4, dim // 2, dim, dim))
        self.channels = [out_channels] * 4
        self.strides = [patch_stride // 4, patch_stride // 2, patch_stride, patch_stride * 2]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [out(scale(x)) for scale, out in zip(self.scales, self.outs)]
