"""Segmentation heads: mmseg's definitions, module for module, with mmseg's names and state-dict order, so that an
mmseg checkpoint maps onto them key by key (``neck.*``, ``decode_head.*``, ``auxiliary_head.*``).

One factory per head name, as ``--head`` takes it: SemanticFPN (``fpn``: ``FPN`` neck + ``FPNHead``, mmseg's
``fpn_r50_512x512_160k_ade20k``) for the mobile encoders; UperNet (``upernet``: ``UPerHead`` + the auxiliary
``FCNHead`` on the stride-16 level, mmseg's ``upernet_*_ade20k``) for ViT-B/16 and the baselines. Decode heads
return logits at their finest level's stride; ``SegModel`` upsamples them to the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from torch import nn

from mcq.models.heads.decode_head import DecodeHead
from mcq.models.heads.fcn_head import FCNHead
from mcq.models.heads.fpn import FPN, FPNHead
from mcq.models.heads.uper_head import UPerHead


@dataclass
class SegHeads:
    """What a head name builds on an encoder: the neck (or ``None``), the decode head, and the auxiliary head that
    only training uses (or ``None``)."""

    neck: nn.Module | None
    decode_head: DecodeHead
    auxiliary_head: DecodeHead | None = None


def semantic_fpn(channels: Sequence[int], strides: Sequence[int], num_classes: int, dropout: float = 0.1) -> SegHeads:
    """FPN neck of 256 channels and an FPNHead of 128 (Kirillov et al.; mmseg's SemanticFPN on ADE20K)."""
    neck = FPN(channels, 256)
    return SegHeads(neck, FPNHead(neck.out_channels, strides, num_classes, 128, dropout))


def upernet(channels: Sequence[int], strides: Sequence[int], num_classes: int, dropout: float = 0.1) -> SegHeads:
    """UPerHead of 512 channels and an FCNHead of 256 on the stride-16 level (mmseg's ``in_index=2``), whose loss
    counts 0.4 in training (the recipe's ``aux_loss_weight``)."""
    level = list(strides).index(16) if 16 in strides else len(strides) - 2
    auxiliary = FCNHead(channels[level], level, num_classes, 256, 1, dropout)
    return SegHeads(None, UPerHead(channels, num_classes, 512, (1, 2, 3, 6), dropout), auxiliary)


HEADS: dict[str, Callable[..., SegHeads]] = {"fpn": semantic_fpn, "upernet": upernet}

__all__ = ["HEADS", "SegHeads", "DecodeHead", "FPN", "FPNHead", "UPerHead", "FCNHead", "semantic_fpn", "upernet"]
