"""mmsegmentation checkpoints in and out: ``mcq import mmseg`` and ``mcq export mmseg``.

mcq's segmentation heads are mmseg's, module for module, so ``neck.*``, ``decode_head.*`` and ``auxiliary_head.*``
map one to one; the backbone goes through ``mcq.interop.backbones``. The head is read from the keys (SemanticFPN's
``decode_head.scale_heads``, UperNet's ``decode_head.psp_modules``), the classes from ``conv_seg`` and
``meta.dataset_meta``, the encoder from the backbone's shapes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import torch

import mcq
from mcq.engine.checkpoint import load_task
from mcq.engine.seg_module import SegTask
from mcq.errors import McqError
from mcq.interop.backbones import infer_encoder, to_mcq, to_timm_backbone
from mcq.interop.mm_checkpoint import read_mm_checkpoint, write_mm_checkpoint
from mcq.io import atomic_path, diff_state
from mcq.export.metadata import palette
from mcq.models.clip_init import foreign_keys
from mcq.models.segmentor import SegModelConfig
from mcq.recipes import load_recipe

HEAD_KEYS = {"fpn": "decode_head.scale_heads.", "upernet": "decode_head.psp_modules."}
MODEL_PARTS = ("neck.", "decode_head.", "auxiliary_head.")


@dataclass
class ImportReport:
    """What ``import_mmseg`` placed: the layout and model it read, and the keys it matched, left at their
    initialisation (``missing``) or found no place for (``unused``: weights of modules the encoder prunes)."""

    source: str
    layout: str
    encoder: str
    head: str
    classes: int
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"import {self.source} ({self.layout} backbone): {self.encoder} + {self.head}, {self.classes} classes; "
                f"{len(self.matched)} weights matched, {len(self.missing)} left at init "
                f"({', '.join(sorted({k.split('.')[0] for k in self.missing})) or 'none'}), "
                f"{len(self.unused)} unused (modules the encoder prunes)")


def infer_head(state: dict[str, torch.Tensor], path: Path) -> str:
    heads = [h for h, prefix in HEAD_KEYS.items() if any(k.startswith(prefix) for k in state)]
    if len(heads) != 1:
        raise McqError(f"{path}: not a SemanticFPN or UperNet checkpoint (no decode_head.scale_heads or "
                       "decode_head.psp_modules); mcq imports those two heads")
    return heads[0]


def import_mmseg(path: str | Path, out: str | Path, backbone: str | None = None,
                 head: str | None = None) -> ImportReport:
    """Write the mmseg checkpoint at ``path`` as an mcq segmentation checkpoint at ``out`` (what ``mcq eval``,
    ``mcq export`` and ``mcq profile`` take). Refused, with nothing written, if any weight of the file or of the
    model (the auxiliary head aside, which only training uses) stays unplaced."""
    path = Path(path)
    ckpt = read_mm_checkpoint(path)
    state = ckpt.state_dict
    head = head or infer_head(state, path)
    if "decode_head.conv_seg.weight" not in state:
        raise McqError(f"{path}: no decode_head.conv_seg.weight, so no class count; not an mmseg segmentor")
    num_classes = state["decode_head.conv_seg.weight"].shape[0]
    names = ckpt.classes or [f"class {i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise McqError(f"{path}: meta.dataset_meta names {len(names)} classes, decode_head.conv_seg has "
                       f"{num_classes} outputs")
    bb = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    try:
        encoder = backbone or infer_encoder(bb)
    except McqError as e:
        raise McqError(f"{path}: {e}") from None
    recipe = load_recipe("seg", head)
    task = SegTask(SegModelConfig(encoder, num_classes, head).to_dict(), names, asdict(recipe), ckpt.palette)
    layout, mapped = to_mcq(bb, task.model.encoder)
    mapped = {"encoder." + k: v for k, v in mapped.items()}
    mapped.update({k: v for k, v in state.items() if k.startswith(MODEL_PARTS)})
    other = sorted(k for k in state if not k.startswith(("backbone.", *MODEL_PARTS)))
    d = diff_state(task.model.state_dict(), mapped)
    trunk_unused = [k.removeprefix("encoder.trunk.") for k in d.unexpected if k.startswith("encoder.trunk.")]
    foreign = set(foreign_keys(trunk_unused, task.model.encoder.trunk))
    pruned = ["encoder.trunk." + k for k in trunk_unused if k not in foreign]
    unplaced = (d.mismatched + [k for k in d.missing if not k.startswith("auxiliary_head.")] + other
                + [k for k in d.unexpected if k not in pruned])
    if unplaced:
        raise McqError(f"{path}: {len(unplaced)} weights do not fit {encoder} + {head} ({layout} backbone), e.g. "
                       f"{unplaced[0]}; check --backbone / --head")
    task.model.load_state_dict({k: mapped[k] for k in d.matched}, strict=False)
    with atomic_path(out) as tmp:
        torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "epoch": 0,
                    "global_step": 0, "pytorch-lightning_version": L.__version__,
                    "mcq_import": {"source": str(path), "layout": layout}}, tmp)
    return ImportReport(str(path), layout, encoder, head, num_classes, d.matched, d.missing, pruned)


def export_mmseg(checkpoint: str | Path, out: str | Path) -> dict:
    """Write the mcq segmentation checkpoint as an mmseg one (``meta`` + ``state_dict``, the backbone as mmpretrain's
    ``TIMMBackbone(features_only=True)``); returns the mmseg config fragment its backbone needs."""
    task = load_task(checkpoint, "seg")
    model = task.model
    encoder = model.encoder
    state = {"backbone." + k: v for k, v in to_timm_backbone(encoder).items()}
    state.update({k: v for k, v in model.state_dict().items() if k.startswith(MODEL_PARTS)})
    timm_name = encoder.info.timm_name
    backbone_cfg = {"type": "mmpretrain.TIMMBackbone", "model_name": timm_name, "features_only": True,
                    "pretrained": False, "out_indices": list(encoder.indices)}
    names = list(task.class_names)
    meta = {"dataset_meta": {"classes": names, "palette": task.palette or palette(len(names))},
            "mcq": {"source": str(checkpoint), "encoder": model.cfg.encoder, "head": model.cfg.head,
                    "backbone": backbone_cfg, "mcq_version": mcq.__version__}}
    write_mm_checkpoint(out, state, meta)
    return backbone_cfg
