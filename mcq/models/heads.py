"""Segmentation decoders, following mmseg's definitions.

SemanticFPN: torchvision's FPN (mmdet's neck) + mmseg's ``FPNHead`` (Kirillov et al., Panoptic FPN).
UperNet: segmentation_models_pytorch's ``UPerNetDecoder`` (mmseg's ``UPerHead``: PPM + FPN + fusion).
Both return stride-4 features; ``SegModel`` adds the classifier and the upsampling to input size.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder


def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class SemanticFPNDecoder(nn.Module):
    """FPN neck (256 ch) and a head that brings every level to stride 4 (128 ch) and sums them."""

    def __init__(self, channels: Sequence[int], strides: Sequence[int], fpn_channels: int = 256, head_channels: int = 128):
        super().__init__()
        self.fpn = FeaturePyramidNetwork(list(channels), fpn_channels)
        base = min(strides)
        self.scale_heads = nn.ModuleList()
        for stride in strides:
            n_up = int(math.log2(stride // base))
            layers: list[nn.Module] = []
            for k in range(max(n_up, 1)):
                layers.append(_conv_bn_relu(fpn_channels if k == 0 else head_channels, head_channels))
                if n_up:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))
        self.out_channels = head_channels

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        pyramid = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))
        out = None
        for head, f in zip(self.scale_heads, pyramid.values()):
            y = head(f)
            out = y if out is None else out + y
        return out


class UperNetDecoder(nn.Module):
    """UperNet (Xiao et al.) through smp, which expects stride-1 and stride-2 slots before stride 4."""

    def __init__(self, channels: Sequence[int], strides: Sequence[int], decoder_channels: int = 512):
        super().__init__()
        self.decoder = UPerNetDecoder([0, 0, *channels], encoder_depth=len(channels) + 1, decoder_channels=decoder_channels)
        self.out_channels = decoder_channels

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.decoder([feats[0], feats[0], *feats])


DECODERS: dict[str, type[nn.Module]] = {"fpn": SemanticFPNDecoder, "upernet": UperNetDecoder}
