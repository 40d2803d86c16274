"""The backbone of an mmseg / mmdet checkpoint against an mcq encoder: which key layout it is in, which encoder it
is, and its weights under mcq's names (``trunk.*``).

Two layouts exist for the encoders mcq has: mmpretrain's ``TIMMBackbone`` (``backbone.timm_model.*``, timm's own
names, or with ``features_only=True`` those of timm's ``FeatureListNet``, whose top-level ``nn.Sequential`` children
are flattened: ``stages_0`` for ``stages.0``) and MobileCLIP / ml-fastvit's own model (``backbone.patch_embed.*``,
``backbone.network.*``), renamed by timm's ``checkpoint_filter_fn``. ml-fastvit's ``fork_feat`` norms
(``norm0/2/4/6``) have no place in mcq's encoder, so such a file is refused, naming them. mcq writes the first.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from mcq.errors import McqError
from mcq.models.clip_init import foreign_keys, trunk_state_dict
from mcq.models.encoders import Encoder, create_encoder, list_encoders

TIMM_PREFIX = "timm_model."
MOBILECLIP_KEYS = ("patch_embed.", "network.")


def plain_trunk(encoder: Encoder) -> bool:
    """Whether the encoder is a timm trunk alone (MCi, Swin): ViT-B/16's simple feature pyramid and ViT-Adapter
    have no mmseg / mmdet backbone to map onto."""
    return all(k.startswith("trunk.") for k in encoder.state_dict())


def feature_list_name(key: str, trunk: nn.Module) -> str:
    """``key`` as timm's ``FeatureListNet`` (``features_only=True``) names it: a top-level ``nn.Sequential``'s
    children flattened into ``<name>_<child>``."""
    head, _, rest = key.partition(".")
    return f"{head}_{rest}" if isinstance(getattr(trunk, head, None), nn.Sequential) else key


def native_name(key: str, trunk: nn.Module) -> str:
    """The inverse of ``feature_list_name``: ``stages_0.blocks.1.x`` -> ``stages.0.blocks.1.x``."""
    head, _, rest = key.partition(".")
    base, _, child = head.rpartition("_")
    return f"{base}.{child}.{rest}" if isinstance(getattr(trunk, base, None), nn.Sequential) else key


def to_mcq(backbone: dict[str, torch.Tensor], encoder: Encoder) -> tuple[str, dict[str, torch.Tensor]]:
    """The backbone's layout name and its weights under ``encoder``'s keys; keys that fit nowhere keep their own
    names (``diff_state`` then counts them as unplaced)."""
    trunk = encoder.trunk
    if any(k.startswith(TIMM_PREFIX) for k in backbone):
        strip = lambda k: k.removeprefix(TIMM_PREFIX).removeprefix("model.")  # noqa: E731 - FeatureGetterNet's model
        return "mmpretrain TIMMBackbone", {"trunk." + native_name(strip(k), trunk): v for k, v in backbone.items()}
    if any(k.startswith(MOBILECLIP_KEYS) for k in backbone):
        _, sd = trunk_state_dict(dict(backbone), trunk)
        return "MobileCLIP / ml-fastvit", {"trunk." + k: v for k, v in sd.items()}
    raise McqError(f"backbone layout not known (e.g. backbone.{next(iter(backbone), '')}): mcq reads mmpretrain's "
                   f"TIMMBackbone (backbone.{TIMM_PREFIX}*) and MobileCLIP's (backbone.network.*)")


def to_timm_backbone(encoder: Encoder) -> dict[str, torch.Tensor]:
    """The encoder's weights as mmpretrain's ``TIMMBackbone(features_only=True)`` holds them (without
    ``backbone.``)."""
    if not plain_trunk(encoder):
        raise McqError(f"{encoder.info.name}: its feature pyramid has no mmseg / mmdet backbone layout; "
                       "MCi and Swin encoders export")
    return {TIMM_PREFIX + feature_list_name(k, encoder.trunk): v for k, v in encoder.trunk.state_dict().items()}


def timm_backbone_config(encoder: Encoder) -> dict:
    """The ``model.backbone`` an mmseg / mmdet config needs for ``to_timm_backbone``'s weights."""
    return {"type": "mmpretrain.TIMMBackbone", "model_name": encoder.info.timm_name, "features_only": True,
            "pretrained": False, "out_indices": list(encoder.indices)}


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}


def infer_encoder(backbone: dict[str, torch.Tensor], names: Iterable[str] | None = None) -> str:
    """The one registered encoder with a plain trunk whose weights the backbone fills (names and shapes), with
    nothing left over but weights of modules the encoder prunes; encoders are built on the meta device."""
    fits = []
    for name in names or [info.name for info in list_encoders()]:
        with torch.device("meta"):
            encoder = create_encoder(name)
        if not plain_trunk(encoder):
            continue
        _, state = to_mcq(backbone, encoder)
        own, theirs = _shapes(encoder.state_dict()), _shapes(state)
        extra = [k.removeprefix("trunk.") for k in theirs if k not in own]
        if all(theirs.get(k) == shape for k, shape in own.items()) and not foreign_keys(extra, encoder.trunk):
            fits.append(name)
    if len(fits) != 1:
        raise McqError(f"backbone fits {' and '.join(fits) if fits else 'no encoder mcq has'}"
                       "; name one with --backbone (see `mcq models`)")
    return fits[0]
