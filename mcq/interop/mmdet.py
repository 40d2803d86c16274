"""mmdetection Mask R-CNN checkpoints in and out: ``mcq import mmdet`` and ``mcq export mmdet``.

mcq's detector is torchvision's Mask R-CNN; mmdet's ``MaskRCNN`` (``FPN`` neck, ``RPNHead``, ``StandardRoIHead``
with ``Shared2FCBBoxHead`` and ``FCNMaskHead``) has the same layers under other names (``RENAMES``) and predictors
laid out otherwise: ``fc_cls`` has the background class last where torchvision has it first, and ``fc_reg`` and
``conv_logits`` have no background slot (or, class-agnostic, one slot for all classes). The import moves the
background row first and gives the other two a zero background slot, which torchvision never reads at inference
(it drops the background's boxes and takes each box's own class's mask); the export undoes both. An imported model
pools its RoIs, lays its anchors and pastes its masks as mmdet does (``MMDET_FLAVOUR``: torchvision's Mask R-CNN
pools unaligned with two samples per bin, rounds its anchors and pastes masks into whole-pixel boxes), or, for a
file mcq wrote, as its ``meta`` says the model was trained; its detections are then mmdet's
(``tests/test_mm_interop_det.py``).
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import torch

import mcq
from mcq.errors import McqError
from mcq.interop.backbones import timm_backbone_config, to_mcq, to_timm_backbone
from mcq.interop.mm_checkpoint import data_preprocessor, read_mm_checkpoint, write_mm_checkpoint
from mcq.interop.placing import ImportReport, place, save_imported, split_backbone
from mcq.tasks.checkpoint import read_checkpoint
from mcq.tasks.metadata import palette
from mcq.tasks.specs import task_spec
from mcq.models.detector import DetModelConfig
from mcq.recipes import load_recipe

# mmdet's name -> torchvision's; {i} is a level or a layer's index
RENAMES = [
    ("neck.lateral_convs.{i}.conv.", "backbone.fpn.inner_blocks.{i}.0."),
    ("neck.fpn_convs.{i}.conv.", "backbone.fpn.layer_blocks.{i}.0."),
    ("rpn_head.rpn_conv.", "rpn.head.conv.0.0."),
    ("rpn_head.rpn_cls.", "rpn.head.cls_logits."),
    ("rpn_head.rpn_reg.", "rpn.head.bbox_pred."),
    ("roi_head.bbox_head.shared_fcs.0.", "roi_heads.box_head.fc6."),
    ("roi_head.bbox_head.shared_fcs.1.", "roi_heads.box_head.fc7."),
    ("roi_head.bbox_head.fc_cls.", "roi_heads.box_predictor.cls_score."),
    ("roi_head.bbox_head.fc_reg.", "roi_heads.box_predictor.bbox_pred."),
    ("roi_head.mask_head.convs.{i}.conv.", "roi_heads.mask_head.{i}.0."),
    ("roi_head.mask_head.upsample.", "roi_heads.mask_predictor.conv5_mask."),
    ("roi_head.mask_head.conv_logits.", "roi_heads.mask_predictor.mask_fcn_logits."),
]
CLS, REG, MASK = "roi_heads.box_predictor.cls_score.", "roi_heads.box_predictor.bbox_pred.", \
    "roi_heads.mask_predictor.mask_fcn_logits."
ENCODER = "backbone.encoder."
MMDET_FLAVOUR = ("roi_align", "anchors", "mask_paste")  # DetModelConfig's fields: "mmdet" for mmdet's models


def rename(key: str, to_mcq_names: bool = True) -> str | None:
    """``key`` under the other framework's name (``None`` where ``RENAMES`` has no rule for it)."""
    for mm, tv in RENAMES:
        src, dst = (mm, tv) if to_mcq_names else (tv, mm)
        m = re.match(re.escape(src).replace(r"\{i\}", r"(\d+)"), key)
        if m:
            return dst.replace("{i}", m.group(1) if m.groups() else "") + key[m.end():]
    return None


def _with_background(key: str, t: torch.Tensor, num_classes: int) -> torch.Tensor:
    """An mmdet predictor tensor in torchvision's layout: background first, a zero slot where mmdet has none."""
    if key.startswith(CLS):
        return torch.cat([t[-1:], t[:-1]])
    rows = 4 if key.startswith(REG) else 1
    if key.startswith((REG, MASK)):
        per_class = t.repeat(num_classes, *[1] * (t.dim() - 1)) if t.shape[0] == rows else t
        return torch.cat([torch.zeros_like(per_class[:rows]), per_class])
    return t


def _without_background(key: str, t: torch.Tensor) -> torch.Tensor:
    if key.startswith(CLS):
        return torch.cat([t[1:], t[:1]])
    if key.startswith(REG):
        return t[4:]
    return t[1:] if key.startswith(MASK) else t


def import_mmdet(path: str | Path, out: str | Path, backbone: str | None = None,
                 img_size: int | None = None) -> ImportReport:
    """Write the mmdet Mask R-CNN checkpoint at ``path`` as an mcq detection checkpoint at ``out``, pooling RoIs as
    mmdet does (or as torchvision does, for a model mcq trained and exported); refused, with nothing written, if any
    weight of the file or of the model stays unplaced."""
    path = Path(path)
    state = read_mm_checkpoint(path)
    weights = state.state_dict
    if "roi_head.bbox_head.fc_cls.weight" not in weights or "roi_head.mask_head.conv_logits.weight" not in weights:
        raise McqError(f"{path}: not a Mask R-CNN checkpoint (no roi_head.bbox_head.fc_cls / "
                       "roi_head.mask_head.conv_logits); mcq imports mmdet's Mask R-CNN")
    num_classes = weights["roi_head.bbox_head.fc_cls.weight"].shape[0] - 1
    names = state.classes or [f"class {i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise McqError(f"{path}: meta.dataset_meta names {len(names)} classes, roi_head.bbox_head.fc_cls has "
                       f"{num_classes} + background")
    bb, encoder = split_backbone(weights, path, backbone)
    recipe = load_recipe("det", "maskrcnn")
    fpn = weights.get("neck.lateral_convs.0.conv.weight")
    written = state.meta.get("mcq", {})
    norm = state.input_norm(encoder)
    cfg = DetModelConfig(encoder, num_classes, img_size or recipe.img_size, 0.0,
                         fpn.shape[0] if fpn is not None else recipe.fpn_channels, recipe.roi_batch_size,
                         **{k: written.get(k, "mmdet") for k in MMDET_FLAVOUR}, input_norm=norm)
    optim = {**asdict(recipe), "img_size": cfg.img_size}  # what `mcq eval det` evaluates at
    hparams = {"model": asdict(cfg), "class_names": names, "category_ids": list(range(1, num_classes + 1)),
               "optim": optim, "palette": state.palette}
    model = task_spec("det").build_model(hparams["model"])
    layout, mapped = to_mcq(bb, model.encoder)
    mapped = {ENCODER + k: v for k, v in mapped.items()}
    for k, v in weights.items():
        if not k.startswith("backbone."):
            name = rename(k) or k
            mapped[name] = _with_background(name, v, num_classes)
    matched, missing, unused = place(model, mapped, model.encoder, ENCODER, path,
                                     f"{encoder} + Mask R-CNN ({layout} backbone)")
    save_imported(model, hparams, out, path, layout)
    return ImportReport(str(path), layout, f"{encoder} + Mask R-CNN", num_classes, matched, missing, unused, norm)


def export_mmdet(checkpoint: str | Path, out: str | Path) -> dict:
    """Write the mcq detection checkpoint as an mmdet one (``meta`` + ``state_dict``, the backbone as mmpretrain's
    ``TIMMBackbone(features_only=True)``); returns the mmdet config fragment its backbone and neck need."""
    task = read_checkpoint(checkpoint, "det")
    model = task.model
    encoder = model.encoder
    if model.backbone.fpn is None:
        raise McqError(f"{checkpoint}: {encoder.info.name}'s simple feature pyramid has no mmdet layout here")
    state = {"backbone." + k: v for k, v in to_timm_backbone(encoder).items()}
    for k, v in model.state_dict().items():
        if not k.startswith(ENCODER):
            name = rename(k, to_mcq_names=False)
            if name is None:
                raise McqError(f"{checkpoint}: {k} has no mmdet name; mcq writes torchvision's Mask R-CNN only")
            state[name] = _without_background(k, v)
    names = list(task.class_names)
    config = {"backbone": timm_backbone_config(encoder),
              "data_preprocessor": data_preprocessor(encoder, model.cfg.input_norm),
              "neck": {"type": "FPN", "in_channels": list(encoder.channels), "out_channels": model.cfg.fpn_channels,
                       "num_outs": len(encoder.channels) + 1}}
    meta = {"dataset_meta": {"classes": names, "palette": task.palette or palette(len(names))},
            "mcq": {"source": str(checkpoint), "encoder": model.cfg.encoder, "head": "maskrcnn", **config,
                    **{k: getattr(model.cfg, k) for k in MMDET_FLAVOUR}, "mcq_version": mcq.__version__}}
    write_mm_checkpoint(out, state, meta)
    return config
