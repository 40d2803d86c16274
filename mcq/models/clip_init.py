"""Initialise an encoder's trunk from a CLIP checkpoint on disk.

Three layouts are read: OpenCLIP (``visual.trunk.*``, optionally ``module.``-prefixed and/or under
``state_dict``), Apple's MobileCLIP ``.pt`` (``image_encoder.model.*``, renamed by timm's own
``checkpoint_filter_fn``) and timm's native keys (a ViT's class token dropped for a trunk without one, as
ViT-Adapter's). Files are read without executing code.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mcq.errors import McqError
from mcq.io import diff_state, load_state
from mcq.models.encoders import Encoder


@dataclass
class LoadReport:
    path: str
    layout: str
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"init {self.path} ({self.layout} layout): {len(self.matched)} matched, {len(self.missing)} missing, "
            f"{len(self.mismatched)} shape-mismatched, {len(self.unexpected)} unexpected (unused) encoder keys"
        )


def _unwrap(sd: dict) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model"):
        if isinstance(sd.get(key), dict):
            sd = sd[key]
    return {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def trunk_state_dict(raw: dict, trunk: torch.nn.Module) -> tuple[str, dict[str, torch.Tensor]]:
    """Detect the layout of ``raw`` and return it with the image trunk's weights under timm's names."""
    sd = _unwrap(raw)
    filter_fn = getattr(sys.modules[type(trunk).__module__], "checkpoint_filter_fn", None)
    if any(k.startswith("image_encoder.model.") for k in sd):
        layout = "mobileclip"
    elif any(k.startswith("visual.trunk.") for k in sd):
        layout = "openclip"
        sd = {k.removeprefix("visual.trunk."): v for k, v in sd.items() if k.startswith("visual.trunk.")}
    else:
        layout = "timm"
    if filter_fn is not None:
        sd = filter_fn(_without_class_token(sd, trunk), trunk)
    return layout, sd


def _without_class_token(sd: dict[str, torch.Tensor], trunk: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A ViT checkpoint with a class token for a ViT without one (ViT-Adapter on AugReg ViT-B/16): the token and
    its slot of the position embedding go, so that the patch grid's embeddings can be resized to the trunk's."""
    pos = sd.get("pos_embed")
    if "cls_token" not in sd or pos is None or getattr(trunk, "cls_token", False) is not None:
        return sd
    grid = pos.shape[1] - 1
    if math.isqrt(grid) ** 2 != grid:
        return sd
    return {**{k: v for k, v in sd.items() if k != "cls_token"}, "pos_embed": pos[:, 1:]}


def _owner(key: str, modules: dict[str, torch.nn.Module]) -> torch.nn.Module | None:
    """The deepest module of ``modules`` that ``key`` lies in (``None``: none but the root)."""
    parts = key.split(".")[:-1]
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return modules[".".join(parts)] if parts else None


def foreign_keys(keys: list[str], trunk: torch.nn.Module) -> list[str]:
    """Unused checkpoint keys inside a module the trunk kept (e.g. blocks of a deeper sibling such as MCi1 for MCi0).

    Keys of modules pruned to ``nn.Identity`` (head, final conv/norm) or unknown to the trunk are not counted.
    """
    modules = dict(trunk.named_modules())
    return [k for k in keys if (m := _owner(k, modules)) is not None and any(True for _ in m.parameters())]


def pruned_keys(keys: list[str], trunk: torch.nn.Module) -> list[str]:
    """Checkpoint keys of modules the trunk pruned to a parameter-free ``nn.Identity`` (head, final conv / norm)."""
    modules = dict(trunk.named_modules())
    return [k for k in keys if (m := _owner(k, modules)) is not None and not any(True for _ in m.parameters())]


def load_clip_init(encoder: Encoder, path: str | Path, allow_partial: bool = False) -> LoadReport:
    """Load ``path`` into ``encoder.trunk``; refuse (``McqError``) if any trunk weight is left unloaded
    or the checkpoint holds trunk weights the encoder has no place for (another architecture)."""
    raw = load_state(path)
    if not isinstance(raw, dict):
        raise McqError(f"{path}: not a checkpoint: it holds a {type(raw).__name__}, not a dict of tensors")
    layout, sd = trunk_state_dict(raw, encoder.trunk)
    diff = diff_state(encoder.trunk.state_dict(), sd)
    report = LoadReport(str(path), layout, diff.matched, diff.missing, diff.unexpected, diff.mismatched)
    foreign = foreign_keys(report.unexpected, encoder.trunk)
    if (report.missing or report.mismatched or foreign) and not allow_partial:
        example = (report.mismatched or report.missing or foreign)[0]
        raise McqError(
            f"{path}: not a {encoder.info.name} checkpoint ({len(report.missing)} encoder weights missing, "
            f"{len(report.mismatched)} of another shape, {len(foreign)} the encoder lacks, e.g. {example}); "
            f"check --backbone, or pass --init-partial to load what matches"
        )
    encoder.trunk.load_state_dict({k: sd[k] for k in report.matched}, strict=False)
    return report
