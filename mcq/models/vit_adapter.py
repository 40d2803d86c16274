"""ViT-Adapter (Chen et al., "Vision Transformer Adapter for Dense Predictions", ICLR 2023) around a timm ViT.

A convolutional spatial prior module (SPM) gives maps at strides 8, 16 and 32; interaction blocks inject them
into the ViT's tokens (Injector) before a group of ViT blocks and extract the tokens back into them (Extractor +
ConvFFN) after it, both through multi-scale deformable attention. The pyramid out (strides 4..32) is the SPM's
maps plus the ViT's, each batch-normalised. Multi-scale deformable attention (Zhu et al., Deformable DETR) is
written with ``F.grid_sample``, as mmcv's ``multi_scale_deformable_attn_pytorch`` fallback does, so that it
trains on a CPU and exports (ONNX ``GridSample``) without the official CUDA extension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_

Shapes = list[tuple[int, int]]  # (height, width) of each level, in the order the levels are concatenated


def ms_deform_attn(value: torch.Tensor, shapes: Shapes, locations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Multi-scale deformable attention's sampling and weighting.

    value (N, S, heads, D): the levels' maps flattened and concatenated; locations (N, Q, heads, levels, points, 2):
    (x, y) in [0, 1] of each level (0 and 1 are the outer edges of its border pixels); weights (N, Q, heads,
    levels, points). Returns (N, Q, heads * D): for each query and head, the weighted sum of the bilinear samples
    (zero outside the map).
    """
    n, _, heads, d = value.shape
    q, levels, points = locations.shape[1], locations.shape[3], locations.shape[4]
    grids = 2 * locations - 1  # grid_sample's [-1, 1], align_corners=False
    samples = []
    for level, (value_l, (h, w)) in enumerate(zip(value.split([h * w for h, w in shapes], dim=1), shapes)):
        value_l = value_l.permute(0, 2, 3, 1).reshape(n * heads, d, h, w)
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # (N * heads, Q, points, 2)
        samples.append(F.grid_sample(value_l, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = weights.transpose(1, 2).reshape(n * heads, 1, q, levels * points)
    out = (torch.stack(samples, dim=-2).flatten(-2) * weights).sum(-1)  # (N * heads, D, Q)
    return out.view(n, heads * d, q).transpose(1, 2)


def reference_points(shapes: Shapes, device: torch.device | None = None) -> torch.Tensor:
    """The pixel centres of every level, (1, sum(h * w), 1, 2) as (x, y) in [0, 1]."""
    refs = []
    for h, w in shapes:
        y, x = torch.meshgrid((torch.arange(h, device=device) + 0.5) / h, (torch.arange(w, device=device) + 0.5) / w,
                              indexing="ij")
        refs.append(torch.stack((x.reshape(-1), y.reshape(-1)), -1))
    return torch.cat(refs)[None, :, None]


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention: each query samples ``points`` locations around its reference point on
    each of ``levels`` maps, with offsets and softmax weights predicted from the query."""

    def __init__(self, dim: int, levels: int, heads: int, points: int, ratio: float = 1.0):
        super().__init__()
        value_dim = int(dim * ratio)
        assert value_dim % heads == 0, f"value dim {value_dim} not divisible by {heads} heads"
        self.levels, self.heads, self.points = levels, heads, points
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, value_dim)
        self.output_proj = nn.Linear(value_dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's init: zero offset weights, biases spreading each head's points along its own
        direction at distances 1..points, uniform attention."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.heads, dtype=torch.float32) * (2 * math.pi / self.heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True).values
        grid = grid[:, None, None] * torch.arange(1, self.points + 1, dtype=torch.float32)[:, None]
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.expand(self.heads, self.levels, self.points, 2).reshape(-1))
        for layer in (self.attention_weights, self.value_proj, self.output_proj):
            nn.init.zeros_(layer.bias)
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.xavier_uniform_(self.output_proj.weight)

    def forward(self, query: torch.Tensor, refs: torch.Tensor, feat: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        """query (N, Q, dim), refs (1 or N, Q, 1, 2), feat (N, S, dim) on the levels ``shapes``."""
        n, q, _ = query.shape
        value = self.value_proj(feat).view(n, feat.shape[1], self.heads, -1)
        offsets = self.sampling_offsets(query).view(n, q, self.heads, self.levels, self.points, 2)
        weights = self.attention_weights(query).view(n, q, self.heads, self.levels * self.points).softmax(-1)
        normalizer = torch.tensor([(w, h) for h, w in shapes], dtype=query.dtype, device=query.device)
        locations = refs[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        out = ms_deform_attn(value, shapes, locations, weights.view(n, q, self.heads, self.levels, self.points))
        return self.output_proj(out)


def _conv_bn_relu(in_ch: int, out_ch: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class SpatialPriorModule(nn.Module):
    """A ResNet-like stem and three stride-2 convs: maps at strides 4, 8, 16, 32 projected to ``dim`` channels."""

    def __init__(self, inplanes: int, dim: int):
        super().__init__()
        widths = [inplanes, 2 * inplanes, 4 * inplanes, 4 * inplanes]
        self.stem = nn.Sequential(*_conv_bn_relu(3, inplanes, 2), *_conv_bn_relu(inplanes, inplanes, 1),
                                  *_conv_bn_relu(inplanes, inplanes, 1), nn.MaxPool2d(3, 2, 1))
        self.convs = nn.ModuleList(nn.Sequential(*_conv_bn_relu(a, b, 2)) for a, b in zip(widths, widths[1:]))
        self.projs = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for conv in self.convs:
            feats.append(conv(feats[-1]))
        return [proj(f) for proj, f in zip(self.projs, feats)]


class ConvFFN(nn.Module):
    """Linear -> 3x3 depthwise conv on each level's map -> GELU -> linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        x = self.fc1(x)
        parts = [self.dwconv(_to_map(t, h, w)).flatten(2).transpose(1, 2)
                 for t, (h, w) in zip(x.split([h * w for h, w in shapes], dim=1), shapes)]
        return self.fc2(self.act(torch.cat(parts, dim=1)))


def _to_map(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(N, h * w, C) tokens as an (N, C, h, w) map, contiguous: a channels-last view would make torch.export
    specialise a batch of one when the map meets a conv."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w).contiguous()


_norm = partial(nn.LayerNorm, eps=1e-6)


class Injector(nn.Module):
    """ViT tokens (queries) attend to the spatial features; added through ``gamma`` (0 at init)."""

    def __init__(self, dim: int, heads: int, points: int, ratio: float, init_values: float):
        super().__init__()
        self.query_norm, self.feat_norm = _norm(dim), _norm(dim)
        self.attn = MSDeformAttn(dim, 3, heads, points, ratio)
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor, refs: torch.Tensor, c: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        return x + self.gamma * self.attn(self.query_norm(x), refs, self.feat_norm(c), shapes)


class Extractor(nn.Module):
    """The spatial features (queries) attend to the ViT tokens, then a ConvFFN."""

    def __init__(self, dim: int, heads: int, points: int, ratio: float, cffn_ratio: float, drop_path: float):
        super().__init__()
        self.query_norm, self.feat_norm, self.ffn_norm = _norm(dim), _norm(dim), _norm(dim)
        self.attn = MSDeformAttn(dim, 1, heads, points, ratio)
        self.ffn = ConvFFN(dim, int(dim * cffn_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, c: torch.Tensor, refs: torch.Tensor, x: torch.Tensor, x_shape: tuple[int, int],
                c_shapes: Shapes) -> torch.Tensor:
        c = c + self.attn(self.query_norm(c), refs, self.feat_norm(x), [x_shape])
        return c + self.drop_path(self.ffn(self.ffn_norm(c), c_shapes))


@dataclass(frozen=True)
class ViTAdapterConfig:
    """The ViT and adapter hyper-parameters; defaults: ViT-Adapter-B of the official ADE20K UperNet config
    (``upernet_augreg_adapter_base_512_160k_ade20k.py``). Smaller values build a tiny model for tests."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    interaction_indexes: tuple[tuple[int, int], ...] = ((0, 2), (3, 5), (6, 8), (9, 11))
    conv_inplane: int = 64
    deform_heads: int = 12
    n_points: int = 4
    deform_ratio: float = 0.5
    cffn_ratio: float = 0.25
    init_values: float = 0.0


class ViTAdapter(nn.Module):
    """Everything of ViT-Adapter except the ViT, which ``forward`` is given (it stays the encoder's ``trunk``)."""

    def __init__(self, cfg: ViTAdapterConfig, drop_path: float = 0.0):
        super().__init__()
        dim, n = cfg.embed_dim, len(cfg.interaction_indexes)
        self.groups = [range(a, b + 1) for a, b in cfg.interaction_indexes]
        self.level_embed = nn.Parameter(torch.zeros(3, dim))
        self.spm = SpatialPriorModule(cfg.conv_inplane, dim)
        attn = dict(heads=cfg.deform_heads, points=cfg.n_points, ratio=cfg.deform_ratio)
        extractor = partial(Extractor, dim, cffn_ratio=cfg.cffn_ratio, drop_path=drop_path, **attn)
        self.injectors = nn.ModuleList(Injector(dim, init_values=cfg.init_values, **attn) for _ in range(n))
        self.extractors = nn.ModuleList(extractor() for _ in range(n))
        self.extra_extractors = nn.ModuleList(extractor() for _ in range(2))  # after the last interaction
        self.up = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.norms = nn.ModuleList(nn.BatchNorm2d(dim) for _ in range(4))
        self.channels, self.strides = [dim] * 4, [4, 8, 16, 32]
        self.apply(_init_weights)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(self, image: torch.Tensor, vit: nn.Module) -> list[torch.Tensor]:
        h, w = image.shape[-2:]
        c_shapes = [(h // 8, w // 8), (h // 16, w // 16), (h // 32, w // 32)]
        x_shape = c_shapes[1]
        x_refs, c_refs = reference_points([x_shape], image.device), reference_points(c_shapes, image.device)
        c1, *cs = self.spm(image)
        c = torch.cat([f.flatten(2).transpose(1, 2) + e for f, e in zip(cs, self.level_embed)], dim=1)
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(image))))  # (N, tokens, dim)
        outs = []
        for i, group in enumerate(self.groups):
            x = self.injectors[i](x, x_refs, c, c_shapes)
            for j in group:
                x = vit.blocks[j](x)
            extractors = [self.extractors[i], *(self.extra_extractors if i == len(self.groups) - 1 else [])]
            for extractor in extractors:
                c = extractor(c, c_refs, x, x_shape, c_shapes)
            outs.append(_to_map(x, *x_shape))
        c2, c3, c4 = (_to_map(t, hh, ww) for t, (hh, ww) in zip(c.split([a * b for a, b in c_shapes], 1), c_shapes))
        pyramid = [self.up(c2) + c1, c2, c3, c4]
        outs = [v if v.shape[-2:] == f.shape[-2:] else F.interpolate(v, size=f.shape[-2:], mode="bilinear")
                for f, v in zip(pyramid, outs)]
        return [norm(f + v) for norm, f, v in zip(self.norms, pyramid, outs)]


def _init_weights(m: nn.Module) -> None:
    """The official init of the adapter's layers (the ViT keeps timm's)."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
