"""Write CLIP checkpoints in the layouts ``mcq.models.clip_init`` reads, from random-init models.

* OpenCLIP: what ``open_clip``'s training script saves (``{"epoch", "name", "state_dict": {"module." + k}}``),
  a bare state dict, a ``.safetensors`` file (as on the HF hub) and a ``.bin``.
* Apple's MobileCLIP ``.pt``: ``image_encoder.model.*`` with Apple's module names and a flat ``network.N``
  list. ``timm_to_apple`` inverts ``timm.models.fastvit.checkpoint_filter_fn``.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

OPENCLIP_FORMATS = ("openclip_train", "bare", "safetensors", "bin")


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Perturb every float parameter and buffer so that loading each one (BN statistics included) shows up in the
    features. FastViT's layer scales start at 1e-5, which would hide a block's weights below assert_close's
    tolerance, so they are drawn from a range that lets every branch count."""
    g = torch.Generator().manual_seed(seed)
    for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):
        if not t.is_floating_point():
            continue
        if name.endswith("running_var"):
            t.uniform_(0.5, 2.0, generator=g)
        elif "layer_scale" in name:
            t.uniform_(0.05, 0.2, generator=g)
        else:
            t.add_(0.02 * torch.randn(t.shape, generator=g))
    return model


def save_openclip(state: dict[str, torch.Tensor], path: Path, fmt: str) -> Path:
    """Save an open_clip model's ``state_dict()`` (keys ``visual.trunk.*``, ``text.*``...) as ``fmt``."""
    if fmt == "openclip_train":  # open_clip/src/open_clip_train/main.py under DDP
        path = path.with_suffix(".pt")
        torch.save({"epoch": 3, "name": "test-run", "state_dict": {"module." + k: v for k, v in state.items()}}, path)
    elif fmt == "bare":
        path = path.with_suffix(".pt")
        torch.save(state, path)
    elif fmt == "bin":  # open_clip_pytorch_model.bin
        path = path.with_suffix(".bin")
        torch.save(state, path)
    elif fmt == "safetensors":  # open_clip_model.safetensors
        path = path.with_suffix(".safetensors")
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        raise ValueError(fmt)
    return path


# timm name -> Apple name: the inverse of the str.replace chain in timm.models.fastvit.checkpoint_filter_fn
_APPLE_NAMES = (
    ("stem", "patch_embed"),
    ("conv_kxk", "rbr_conv"),
    ("conv_scale", "rbr_scale"),
    ("identity", "rbr_skip"),
    ("final_conv", "conv_exp"),
    ("large_conv", "lkb_origin"),
    ("mlp", "convffn"),
    ("se.fc1", "se.reduce"),
    ("se.fc2", "se.expand"),
)
_STAGE_KEY = re.compile(r"stages\.(\d+)\.(downsample\.proj|pos_emb\.pos_enc|blocks)\.(.+)")
_APPLE_PART = {"downsample.proj": "{n}.proj", "pos_emb.pos_enc": "{n}.pe", "blocks": "{n}"}


def timm_to_apple(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a timm FastViT/MCi state dict to Apple's MobileCLIP image encoder names (without the prefix).

    Apple's ``network`` is flat: for each stage its downsampling ``PatchEmbed`` (``proj``), then its positional
    encoding (``pe``), then its blocks, each taking the next index. The CLIP projection ``head.proj`` is
    ``head.fc.weight`` transposed; timm's filter gives ``head.fc`` a zero bias, so the bias must be zero here.
    """
    net_index: dict[tuple[str, str], int] = {}
    for k in state:
        if m := _STAGE_KEY.fullmatch(k):
            net_index.setdefault(m.groups()[:2], -1)
    order = {"downsample.proj": 0, "pos_emb.pos_enc": 1, "blocks": 2}
    for n, key in enumerate(sorted(net_index, key=lambda sp: (int(sp[0]), order[sp[1]]))):
        net_index[key] = n

    out = {}
    for k, v in state.items():
        if m := _STAGE_KEY.fullmatch(k):
            stage, part, rest = m.groups()
            head, tail = "network." + _APPLE_PART[part].format(n=net_index[stage, part]), rest
        else:
            head, tail = "", k
        for timm_name, apple_name in _APPLE_NAMES:
            tail = tail.replace(timm_name, apple_name)
        tail = re.sub(r"layer_scale(_\d)?\.gamma$", r"layer_scale\1", tail)
        k = f"{head}.{tail}" if head else tail
        if k == "head.fc.weight":
            k, v = "head.proj", v.T.contiguous()
        elif k == "head.fc.bias":
            assert not v.any(), "a CLIP projection has no bias"
            continue
        out[k] = v
    return out


def fake_text_encoder() -> dict[str, torch.Tensor]:
    """A few keys of Apple's text tower, which mcq must ignore."""
    return {
        "text_encoder.embedding_layer.weight": torch.randn(16, 8),
        "text_encoder.positional_embedding.pos_embed.pos_embed": torch.randn(1, 1, 4, 8),
        "text_encoder.transformer.0.pre_norm_mha.1.qkv_proj.weight": torch.randn(24, 8),
        "text_encoder.transformer.0.pre_norm_mha.1.out_proj.weight": torch.randn(8, 8),
        "text_encoder.projection_layer": torch.randn(8, 4),
        "logit_scale": torch.tensor(4.6),
    }


def apple_mobileclip(timm_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Apple's MobileCLIP ``.pt`` for a timm ``fastvit_mci*`` model with a CLIP projection head."""
    image = {"image_encoder.model." + k: v for k, v in timm_to_apple(timm_model.state_dict()).items()}
    return {**image, **fake_text_encoder()}
