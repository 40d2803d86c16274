"""The inference form of a task model: what every exporter, runtime and profiler starts from."""

from __future__ import annotations

import copy

from timm.utils import reparameterize_model
from torch import nn


def inference_form(model: nn.Module, input_size: tuple[int, int] | None = None) -> nn.Module:
    """Eval mode with every MobileOne/RepMixer/RepCPE block fused (the whole task model, not the bare encoder) and
    without heads that only training uses (UperNet's auxiliary head, so artifacts do not carry it); with
    ``input_size`` (height, width), checked and fixed to it (``Encoder.fix_input_size``). A model already fused (a
    quantization-aware checkpoint's, ``mcq.models.pt2e``) is not fused again: timm's blocks fuse only once."""
    model = copy.deepcopy(model).eval()
    if getattr(model, "auxiliary_head", None) is not None:
        model.auxiliary_head = None
    if not getattr(model, "fused", False):
        model = reparameterize_model(model)
        model.fused = True
    if input_size is not None:
        model.encoder.fix_input_size(*input_size)
    return model
