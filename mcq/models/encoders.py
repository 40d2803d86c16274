"""Encoders: timm trunks that return a feature pyramid, one registered factory per name.

Every encoder returns a list of NCHW maps at increasing strides (``encoder.strides``) with
``encoder.channels`` channels. ``encoder.trunk`` is the timm model whose weights come from a
CLIP checkpoint (see ``mcq.models.clip_init``); anything outside the trunk (the ViTDet pyramid,
ViT-Adapter's adapter) is trained from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import timm
import torch
import torch.nn.functional as F
from timm.layers import Format
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from mcq.models.pyramid import SimpleFeaturePyramid
from mcq.models.vit_adapter import ViTAdapter, ViTAdapterConfig


@dataclass(frozen=True)
class EncoderInfo:
    """Plain-data description of a registered encoder."""

    name: str
    timm_name: str
    default_head: str
    description: str
    img_size: int = 512  # input size of the paper's ADE20K figure (``mcq profile``'s default for random init)


class Renormalize(nn.Module):
    """An input normalised with the encoder's mean/std, as a model trained on another normalisation takes it (an
    imported mm* model's; ``input_norm``: its ``mean`` and ``std`` in [0, 1] units and, where it was trained on
    BGR images, ``bgr``). One fixed 1x1 convolution, which swaps the channels too: no approximation, ahead of any
    padding, and delegated by every runtime, so artifacts keep the encoder's input and apps their pre-processing."""

    def __init__(self, own: tuple[Sequence[float], Sequence[float]], input_norm: dict):
        super().__init__()
        order = [2, 1, 0] if input_norm.get("bgr") else [0, 1, 2]
        mean, std = (torch.tensor(v, dtype=torch.float32)[order] for v in own)
        to_mean, to_std = (torch.tensor(input_norm[k], dtype=torch.float32) for k in ("mean", "std"))
        weight = torch.zeros(3, 3, 1, 1)
        weight[range(3), order, 0, 0] = std / to_std
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", (mean - to_mean) / to_std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias)


class Encoder(nn.Module):
    """A timm trunk returning the maps at ``indices``, optionally followed by a neck; ``renormalize`` fits it to a
    model trained on another input normalisation than its own."""

    def __init__(self, info: EncoderInfo, trunk: nn.Module, indices: Sequence[int], neck: nn.Module | None = None):
        super().__init__()
        self.info = info
        self.trunk = trunk
        self.indices = list(indices)
        trunk.prune_intermediate_layers(self.indices, prune_head=True, prune_norm=True)
        self.neck = neck
        feature_info = trunk.feature_info
        if neck is None:
            self.channels = [feature_info[i]["num_chs"] for i in self.indices]
            self.strides = [feature_info[i]["reduction"] for i in self.indices]
        else:
            self.channels, self.strides = list(neck.channels), list(neck.strides)
        self.mean, self.std = normalization(info.name)
        self.renorm: nn.Module = nn.Identity()

    def renormalize(self, input_norm: dict | None) -> None:
        """Take inputs normalised with ``mean``/``std`` as a model trained on ``input_norm`` did (``Renormalize``);
        ``None``: as they are."""
        self.renorm = Renormalize((self.mean, self.std), input_norm) if input_norm else nn.Identity()

    @property
    def max_stride(self) -> int:
        return max(self.strides)

    def check_input_size(self, height: int, width: int) -> None:
        """Raise a one-line error unless the encoder can take an image of this size."""
        s = self.max_stride
        if height % s or width % s or height < s or width < s:
            from mcq.errors import McqError

            raise McqError(
                f"image size {height}x{width} does not suit {self.info.name}: use a multiple of {s} "
                f"(e.g. --img-size {max(s, round(max(height, width) / s) * s)})"
            )

    def fix_input_size(self, height: int, width: int) -> None:
        """Check the size, then build a ViT trunk for it alone: its position embedding resampled once, not in
        every forward (ExecuTorch has no kernel for that antialiased bicubic resize)."""
        self.check_input_size(height, width)
        trunk = self.trunk
        if isinstance(trunk, VisionTransformer) and trunk.dynamic_img_size:
            trunk.set_input_size((height, width))
            trunk.dynamic_img_size = False
            embed = trunk.patch_embed  # back to timm's fixed-size form: tokens out flat (NLC), sizes checked
            embed.flatten, embed.output_fmt, embed.strict_img_size = True, Format.NCHW, True

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.renorm(x)
        feats = self.trunk.forward_intermediates(x, indices=self.indices, intermediates_only=True, output_fmt="NCHW")
        return self.neck(feats[-1]) if self.neck is not None else list(feats)


class AdapterEncoder(Encoder):
    """A ViT trunk run block by block inside an adapter (ViT-Adapter), which returns the pyramid."""

    def __init__(self, info: EncoderInfo, trunk: nn.Module, adapter: ViTAdapter):
        super().__init__(info, trunk, [len(trunk.blocks) - 1])
        self.adapter = adapter
        self.channels, self.strides = list(adapter.channels), list(adapter.strides)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.adapter(self.renorm(x), self.trunk)


_REGISTRY: dict[str, tuple[EncoderInfo, Callable[..., Encoder]]] = {}


def register_encoder(info: EncoderInfo):
    """Decorator: register a factory ``fn(drop_path: float, **kwargs) -> Encoder`` under ``info.name``."""

    def wrap(fn: Callable[..., Encoder]) -> Callable[..., Encoder]:
        _REGISTRY[info.name] = (info, fn)
        return fn

    return wrap


def list_encoders() -> list[EncoderInfo]:
    return [info for info, _ in _REGISTRY.values()]


def encoder_info(name: str) -> EncoderInfo:
    if name not in _REGISTRY:
        from mcq.errors import McqError

        raise McqError(f"unknown encoder {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name][0]


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Input mean/std of encoder ``name`` (RGB in [0, 1]), from its timm pretrained config."""
    cfg = timm.models.get_pretrained_cfg(encoder_info(name).timm_name)
    return tuple(map(float, cfg.mean)), tuple(map(float, cfg.std))


def create_encoder(name: str, drop_path: float = 0.0, **kwargs) -> Encoder:
    """Build the encoder registered as ``name`` with stochastic depth ``drop_path`` (random init); ``kwargs`` go to
    its factory (e.g. a smaller ``vit_adapter_b`` for tests)."""
    encoder_info(name)
    return _REGISTRY[name][1](drop_path=drop_path, **kwargs)


def _mci(name: str, timm_name: str, levels: int, description: str) -> None:
    info = EncoderInfo(name, timm_name, "fpn", description)

    @register_encoder(info)
    def factory(drop_path: float = 0.0) -> Encoder:
        trunk = timm.create_model(timm_name, pretrained=False, num_classes=0, drop_path_rate=drop_path)
        return Encoder(info, trunk, range(levels))

    factory.__name__ = name


_mci("mci0", "fastvit_mci0", 4, "MobileCLIP-S0 image encoder (MCi0), FastViT hybrid")
_mci("mci1", "fastvit_mci1", 4, "MobileCLIP-S1 image encoder (MCi1), FastViT hybrid")
_mci("mci2", "fastvit_mci2", 4, "MobileCLIP-S2 image encoder (MCi2), FastViT hybrid")
_mci("mci3", "fastvit_mci3", 5, "MobileCLIP2-S3 image encoder (MCi3), five stages to stride 64")
_mci("mci4", "fastvit_mci4", 5, "MobileCLIP2-S4 image encoder (MCi4), five stages to stride 64")


_VIT_B16 = EncoderInfo("vit_b16", "vit_base_mci_224", "upernet",
                       "ViT-B/16 (MobileCLIP-B) + ViTDet simple feature pyramid")


@register_encoder(_VIT_B16)
def vit_b16(drop_path: float = 0.0) -> Encoder:
    trunk = timm.create_model(
        _VIT_B16.timm_name, pretrained=False, num_classes=0, drop_path_rate=drop_path, dynamic_img_size=True
    )
    last = len(trunk.blocks) - 1
    return Encoder(_VIT_B16, trunk, [last], neck=SimpleFeaturePyramid(trunk.embed_dim, patch_stride=16))


_SWIN_L = EncoderInfo("swin_l", "swin_large_patch4_window12_384", "upernet", "Swin-L (baseline of [profile])", 640)


@register_encoder(_SWIN_L)
def swin_l(drop_path: float = 0.0) -> Encoder:
    trunk = timm.create_model(
        _SWIN_L.timm_name, pretrained=False, num_classes=0, drop_path_rate=drop_path,
        strict_img_size=False, dynamic_img_size=True,
    )
    return Encoder(_SWIN_L, trunk, range(4))


_VIT_ADAPTER_B = EncoderInfo("vit_adapter_b", "vit_base_patch16_384.augreg_in21k_ft_in1k", "upernet",
                             "ViT-Adapter-B: ViT-B/16 + spatial prior + deformable interactions (baseline)")


@register_encoder(_VIT_ADAPTER_B)
def vit_adapter_b(drop_path: float = 0.0, **kwargs) -> Encoder:
    """ViT-Adapter-B (``ViTAdapterConfig``'s defaults; ``kwargs`` override its fields) on timm's AugReg ViT-B/16
    at 384 px, whose position embedding is resized to the input, without class token, as ViT-Adapter uses it."""
    cfg = ViTAdapterConfig(**kwargs)
    trunk = timm.create_model(
        _VIT_ADAPTER_B.timm_name, pretrained=False, num_classes=0, drop_path_rate=drop_path, dynamic_img_size=True,
        class_token=False, global_pool="avg", embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
    )
    return AdapterEncoder(_VIT_ADAPTER_B, trunk, ViTAdapter(cfg, drop_path))


def describe_encoders() -> list[dict]:
    """Name, parameters, channels, strides and default head of every registered encoder (built on the meta device)."""
    rows = []
    for info in list_encoders():
        with torch.device("meta"):
            enc = create_encoder(info.name)
        rows.append({**vars(info), "params_m": sum(p.numel() for p in enc.parameters()) / 1e6,
                     "channels": enc.channels, "strides": enc.strides})
    return rows


def format_encoders(rows: list[dict]) -> str:
    """``describe_encoders``' rows as a table (``mcq models``)."""
    w = max(len(r["name"]) for r in rows)
    lines = [f"{'name':<{w}} {'params(M)':>9}  {'head':<8} {'strides':<19} {'channels':<29} timm model"]
    for r in rows:
        lines.append(f"{r['name']:<{w}} {r['params_m']:>9.1f}  {r['default_head']:<8} {str(r['strides']):<19} "
                     f"{str(r['channels']):<29} {r['timm_name']}")
    return "\n".join(lines)
