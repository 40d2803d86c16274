"""The segmentation model, laid out as mmseg's ``EncoderDecoder``: encoder (mmseg's ``backbone``) -> neck ->
decode head, logits upsampled to the input; the auxiliary head (UperNet's) runs in training only."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from mcq.errors import McqError
from mcq.models.encoders import Encoder, create_encoder, encoder_info
from mcq.models.heads import HEADS


@dataclass
class SegModelConfig:
    """Everything needed to rebuild a segmentation model; stored in every checkpoint."""

    encoder: str
    num_classes: int
    head: str = ""  # "" picks the encoder's default ("fpn" for MCi, "upernet" for ViT/Swin)
    drop_path: float = 0.0
    dropout: float = 0.1
    freeze_encoder: bool = False  # train the neck and heads only, on the encoder's features as they are (a probe)
    input_norm: dict | None = None  # what an imported mm* model was trained on, if not the encoder's: Renormalize

    def __post_init__(self) -> None:
        self.head = self.head or encoder_info(self.encoder).default_head
        if self.head not in HEADS:
            raise McqError(f"unknown head {self.head!r}; known: {', '.join(HEADS)}")


class SegModel(nn.Module):
    def __init__(self, cfg: SegModelConfig, encoder: Encoder | None = None):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder or create_encoder(cfg.encoder, drop_path=0.0 if cfg.freeze_encoder else cfg.drop_path)
        self.encoder.renormalize(cfg.input_norm)
        if cfg.freeze_encoder:  # BatchNorm statistics stay the pretrained ones too (see ``train``)
            self.encoder.requires_grad_(False)
            self.encoder.eval()
        heads = HEADS[cfg.head](self.encoder.channels, self.encoder.strides, cfg.num_classes, cfg.dropout)
        self.neck, self.decode_head, self.auxiliary_head = heads.neck, heads.decode_head, heads.auxiliary_head
        self.output_stride = min(self.encoder.strides)

    def train(self, mode: bool = True) -> "SegModel":
        super().train(mode)
        if self.cfg.freeze_encoder:  # Lightning restores each module's own mode after validation: eval from the start
            self.encoder.eval()
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.encoder(x)
        return feats if self.neck is None else self.neck(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._upsample(self.decode_head(self.features(x)))

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The logits and the auxiliary head's (``None`` without one), both at input resolution."""
        feats, aux = self.features(x), self.auxiliary_head
        logits = self._upsample(self.decode_head(feats))
        if aux is None:
            return logits, None
        return logits, F.interpolate(aux(feats), size=x.shape[2:], mode="bilinear", align_corners=False)

    def _upsample(self, logits: torch.Tensor) -> torch.Tensor:
        """The decode head's logits (at the finest level's stride) at input resolution."""
        return F.interpolate(logits, scale_factor=self.output_stride, mode="bilinear", align_corners=False)


def create_seg_model(encoder: str, num_classes: int, head: str = "", drop_path: float = 0.0,
                     freeze_encoder: bool = False) -> SegModel:
    return SegModel(SegModelConfig(encoder=encoder, num_classes=num_classes, head=head, drop_path=drop_path,
                                   freeze_encoder=freeze_encoder))
