"""mmsegmentation checkpoints in and out: ``mcq import mmseg`` and ``mcq export mmseg``.

mcq's segmentation heads are mmseg's, module for module, so ``neck.*``, ``decode_head.*`` and ``auxiliary_head.*``
map one to one; the backbone goes through ``mcq.interop.backbones``. The head is read from the keys (SemanticFPN's
``decode_head.scale_heads``, UperNet's ``decode_head.psp_modules``), the classes from ``conv_seg`` and
``meta.dataset_meta``, the encoder from the backbone's shapes.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

import mcq
from mcq.errors import McqError
from mcq.interop.backbones import timm_backbone_config, to_mcq, to_timm_backbone
from mcq.interop.mm_checkpoint import data_preprocessor, read_mm_checkpoint, write_mm_checkpoint
from mcq.interop.placing import ImportReport, place, save_imported, split_backbone
from mcq.models.segmentor import SegModelConfig
from mcq.recipes import load_recipe
from mcq.tasks.checkpoint import read_checkpoint
from mcq.tasks.metadata import palette
from mcq.tasks.specs import task_spec

HEAD_KEYS = {"fpn": "decode_head.scale_heads.", "upernet": "decode_head.psp_modules."}
MODEL_PARTS = ("neck.", "decode_head.", "auxiliary_head.")


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
    bb, encoder = split_backbone(state, path, backbone)
    recipe = load_recipe("seg", head)
    norm = ckpt.input_norm(encoder)
    cfg = SegModelConfig(encoder, num_classes, head, input_norm=norm)
    hparams = {"model": asdict(cfg), "class_names": names, "optim": asdict(recipe), "palette": ckpt.palette}
    model = task_spec("seg").build_model(hparams["model"])
    layout, mapped = to_mcq(bb, model.encoder)
    mapped = {"encoder." + k: v for k, v in mapped.items()}
    mapped.update({k: v for k, v in state.items() if not k.startswith("backbone.")})
    matched, missing, unused = place(model, mapped, model.encoder, "encoder.", path,
                                     f"{encoder} + {head} ({layout} backbone)", "--backbone / --head",
                                     optional=("auxiliary_head.",))
    save_imported(model, hparams, out, path, layout)
    return ImportReport(str(path), layout, f"{encoder} + {head}", num_classes, matched, missing, unused, norm)


def export_mmseg(checkpoint: str | Path, out: str | Path) -> dict:
    """Write the mcq segmentation checkpoint as an mmseg one (``meta`` + ``state_dict``, the backbone as mmpretrain's
    ``TIMMBackbone(features_only=True)``); returns the mmseg config fragment its backbone needs (``backbone``)."""
    task = read_checkpoint(checkpoint, "seg")
    model = task.model
    encoder = model.encoder
    state = {"backbone." + k: v for k, v in to_timm_backbone(encoder).items()}
    state.update({k: v for k, v in model.state_dict().items() if k.startswith(MODEL_PARTS)})
    config = {"backbone": timm_backbone_config(encoder),
              "data_preprocessor": data_preprocessor(encoder, model.cfg.input_norm)}
    names = list(task.class_names)
    meta = {"dataset_meta": {"classes": names, "palette": task.palette or palette(len(names))},
            "mcq": {"source": str(checkpoint), "encoder": model.cfg.encoder, "head": model.cfg.head,
                    **config, "mcq_version": mcq.__version__}}
    write_mm_checkpoint(out, state, meta)
    return config
