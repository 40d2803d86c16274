"""CLIP models for ``mcq train clip``: open_clip's architectures, optionally with a smaller text tower, and the
checkpoint layout open_clip's training script saves (which ``mcq.models.clip_init`` reads back for ``--init``)."""

from __future__ import annotations

import copy
import difflib
from pathlib import Path

import open_clip
import torch

from mcq.errors import McqError
from mcq.io import atomic_path, write_json

# An mcq encoder trained as a CLIP image tower takes this architecture's config with the encoder's timm trunk.
BASE_ARCH = "MobileCLIP2-S0"


def clip_model_config(name: str, text_width: int | None = None, text_layers: int | None = None,
                      context_length: int = 77) -> dict:
    """open_clip's config of ``name`` (an open_clip architecture, or an mcq encoder such as ``mci1`` paired with
    ``BASE_ARCH``'s text tower), with the text transformer narrowed / made shallower when asked."""
    from mcq.models.encoders import encoder_info, list_encoders

    encoders = [info.name for info in list_encoders()]
    cfg = open_clip.get_model_config(name)
    if cfg is None and name in encoders:
        cfg = open_clip.get_model_config(BASE_ARCH)
        cfg["vision_cfg"]["timm_model_name"] = encoder_info(name).timm_name
    if cfg is None:
        known = open_clip.list_models()
        close = difflib.get_close_matches(name, known + encoders, n=3, cutoff=0.5)
        mobile = [m for m in known if m.startswith("MobileCLIP")] + ["ViT-B-16"]
        raise McqError(f"unknown CLIP model {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
                       + f"; open_clip has {len(known)} architectures (open_clip.list_models()), among them "
                       f"{', '.join(mobile)}; or an mcq encoder: {', '.join(encoders)}")
    cfg = copy.deepcopy(cfg)
    text = cfg["text_cfg"]
    if "hf_model_name" in text and (text_width or text_layers):
        raise McqError(f"{name}: its text tower is a Hugging Face model; --text-width/--text-layers do not apply")
    if text_width:
        text["width"], text["heads"] = text_width, max(1, text_width // 64)
    if text_layers:
        text["layers"] = text_layers
    text["context_length"] = context_length
    return cfg


def create_clip_model(cfg: dict, img_size: int) -> torch.nn.Module:
    """A randomly initialised open_clip model from ``cfg`` (see ``clip_model_config``) for ``img_size`` inputs."""
    cfg = copy.deepcopy(cfg)
    custom_text = cfg.pop("custom_text", False)
    cfg["vision_cfg"]["image_size"] = img_size
    if "timm_model_name" in cfg["vision_cfg"]:
        cfg["vision_cfg"]["timm_model_pretrained"] = False
    model_class = open_clip.CustomTextCLIP if custom_text or "hf_model_name" in cfg["text_cfg"] else open_clip.CLIP
    model = model_class(**cfg)
    trunk = getattr(model.visual, "trunk", None)
    if hasattr(trunk, "set_input_size"):  # open_clip builds a timm ViT at its default size, whatever image_size says
        trunk.set_input_size(img_size=(img_size, img_size))
    return model


def tokenizer_for(name: str, context_length: int):
    """open_clip's tokenizer for architecture ``name`` (mcq encoders use ``BASE_ARCH``'s)."""
    return open_clip.get_tokenizer(name if open_clip.get_model_config(name) else BASE_ARCH,
                                   context_length=context_length)


def save_openclip_checkpoint(model: torch.nn.Module, path: str | Path, name: str, epoch: int, cfg: dict,
                             img_size: int) -> Path:
    """Write ``{"epoch", "name", "state_dict"}`` as open_clip's training script does, and beside it
    ``open_clip_config.json`` (``{"model_cfg": cfg}`` with the trained ``image_size``, the layout of open_clip's hub
    configs), atomically."""
    path = Path(path)
    cfg = copy.deepcopy(cfg)
    cfg["vision_cfg"]["image_size"] = img_size
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"epoch": epoch, "name": name, "state_dict": state}, tmp)
    write_json(path.with_name("open_clip_config.json"), {"model_cfg": cfg})
    return path
