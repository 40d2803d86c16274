"""Encoders, heads and task models."""

from mcq.models.encoders import (
    Encoder, EncoderInfo, create_encoder, describe_encoders, encoder_info, list_encoders, register_encoder,
)
from mcq.models.detector import DetModel, DetModelConfig, create_det_model
from mcq.models.segmentor import SegModel, SegModelConfig, create_seg_model

__all__ = [
    "Encoder", "EncoderInfo", "create_encoder", "describe_encoders", "encoder_info", "list_encoders",
    "register_encoder",
    "DetModel", "DetModelConfig", "create_det_model", "SegModel", "SegModelConfig", "create_seg_model",
]
