"""What every mmseg decode head shares (``BaseDecodeHead``): dropout and the 1x1 classifier ``conv_seg``, created
before the head's own layers, so that a state dict lists ``conv_seg`` first, as mmseg's do."""

from __future__ import annotations

import torch
from torch import nn


class DecodeHead(nn.Module):
    """Subclasses build their layers after ``super().__init__`` and end their forward in ``cls_seg``."""

    def __init__(self, channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else None
        self.channels = channels

    def cls_seg(self, feat: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits at the resolution of ``feat``."""
        return self.conv_seg(feat if self.dropout is None else self.dropout(feat))
