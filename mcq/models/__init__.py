"""Encoders, heads and task models."""

from mcq.models.encoders import (
    Encoder, EncoderInfo, create_encoder, describe_encoders, encoder_info, list_encoders, register_encoder,
)
from mcq.models.segmentor import SegModel, SegModelConfig, create_seg_model

__all__ = [
    "Encoder", "EncoderInfo", "create_encoder", "describe_encoders", "encoder_info", "list_encoders", "register_encoder",
    "SegModel", "SegModelConfig", "create_seg_model",
]
