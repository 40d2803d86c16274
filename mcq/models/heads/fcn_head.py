"""mmseg's ``FCNHead`` as UperNet's auxiliary head: convs on one level, classified (training only)."""

from __future__ import annotations

import torch
from torch import nn

from mcq.models.heads.conv_module import ConvModule
from mcq.models.heads.decode_head import DecodeHead


class FCNHead(DecodeHead):
    """``num_convs`` 3x3 conv + BN + ReLU on level ``in_index``, no concatenation of the input (``concat_input=False``,
    as in mmseg's UperNet configs)."""

    def __init__(self, in_channels: int, in_index: int, num_classes: int, channels: int = 256, num_convs: int = 1,
                 dropout: float = 0.1):
        super().__init__(channels, num_classes, dropout)
        self.in_index = in_index
        self.convs = nn.Sequential(*(ConvModule(channels if k else in_channels, channels, 3) for k in range(num_convs)))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.cls_seg(self.convs(inputs[self.in_index]))
