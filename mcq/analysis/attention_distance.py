"""Mean attention distance of a ViT encoder per head and layer (the paper's Fig. 3), in input pixels.

For one head, one image and one query patch q: ``sum_k a(q, k) * |c(q) - c(k)|``, where ``c`` is a patch's centre in
pixels and ``a`` the attention weight; averaged over the query patches and the images. Convention: the prefix tokens
(CLS, registers) are left out both as queries and as keys, and each query's patch-to-patch weights are renormalised to
sum to 1 (the distance "among patches"; a prefix token has no position).

The attention maps come from timm's own blocks: each ``Attention`` is switched to its unfused path
(``fused_attn = False``), where it computes ``softmax(q k^T / sqrt(d))`` explicitly, and a forward hook on its
``attn_drop`` (a no-op in eval mode) reads that matrix. The model is not rewritten and its outputs do not change.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from PIL import Image
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from tqdm import tqdm

from mcq.errors import McqError
from mcq.io import atomic_path, diff_state, load_state, write_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def patch_distances(grid: tuple[int, int], stride: int) -> torch.Tensor:
    """``[n, n]`` Euclidean distances in pixels between the centres of the ``grid`` (rows, cols) patches, row-major,
    for patches ``stride`` pixels apart."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    centres = torch.stack([rows.flatten(), cols.flatten()], 1).double() * stride
    return torch.cdist(centres, centres)


def mean_attention_distance(attn: torch.Tensor, grid: tuple[int, int], stride: int, prefix: int = 0) -> torch.Tensor:
    """``[B, H]`` mean attention distance in pixels of ``attn`` (``[B, H, N, N]``, rows summing to 1, the first
    ``prefix`` tokens not patches): prefix tokens dropped as queries and keys, the rest of each row renormalised."""
    n = grid[0] * grid[1]
    if attn.shape[-1] != prefix + n:
        raise ValueError(f"attention over {attn.shape[-1]} tokens, expected {prefix} + {grid[0]}x{grid[1]}")
    a = attn[..., prefix:, prefix:].double()
    a = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
    return (a * patch_distances(grid, stride)).sum(-1).mean(-1)


@contextmanager
def attention_maps(trunk: VisionTransformer) -> Iterator[list[torch.Tensor]]:
    """Within the block, each forward of ``trunk`` appends its blocks' attention matrices (``[B, H, N, N]``, one per
    block, in order) to the yielded list."""
    maps: list[torch.Tensor] = []
    attns = [b.attn for b in trunk.blocks]
    if not all(hasattr(a, "fused_attn") and isinstance(getattr(a, "attn_drop", None), nn.Module) for a in attns):
        raise McqError(f"{type(trunk.blocks[0].attn).__name__}: a timm attention without the fused_attn/attn_drop "
                       "path this analysis reads")
    fused = [a.fused_attn for a in attns]
    hooks = [a.attn_drop.register_forward_hook(lambda m, i, out: maps.append(out.detach())) for a in attns]
    for a in attns:
        a.fused_attn = False
    try:
        yield maps
    finally:
        for a, f, h in zip(attns, fused, hooks):
            a.fused_attn = f
            h.remove()


@torch.no_grad()
def trunk_attention_distance(trunk: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """``[B, layers, heads]`` mean attention distances in pixels of ``trunk`` (eval mode) on ``images``."""
    stride = trunk.feature_info[-1]["reduction"]
    grid = (images.shape[-2] // stride, images.shape[-1] // stride)
    with attention_maps(trunk) as maps:
        trunk.forward_features(images)
    return torch.stack([mean_attention_distance(m, grid, stride, trunk.num_prefix_tokens) for m in maps], 1)


def _vit_from_openclip(path: Path, sd: dict) -> tuple[nn.Module, str]:
    """The image trunk of an OpenCLIP checkpoint: built from ``open_clip_config.json`` beside it when there is one
    (open_clip's hub layout, and what ``mcq train clip`` writes), else mcq's ``vit_b16`` encoder."""
    from mcq.models.clip_init import load_clip_init, trunk_state_dict
    from mcq.models.clip_model import create_clip_model
    from mcq.models.encoders import create_encoder

    config = path.with_name("open_clip_config.json")
    if not config.is_file():
        if not any(k.endswith("blocks.0.attn.qkv.weight") for k in sd):
            raise McqError(f"{path}: not a ViT image tower (no blocks.N.attn.qkv weights, e.g. an MCi checkpoint); "
                           "attention distance is for ViT encoders (vit_b16)")
        encoder = create_encoder("vit_b16")
        load_clip_init(encoder, path)
        return encoder.trunk, "vit_b16"
    cfg = json.loads(config.read_text())
    cfg = cfg.get("model_cfg", cfg)
    name = cfg.get("vision_cfg", {}).get("timm_model_name")
    if not name:
        raise McqError(f"{config}: its image tower is not a timm model; attention distance is for timm ViT encoders")
    visual = create_clip_model(cfg, cfg["vision_cfg"].get("image_size", 224)).visual
    check_vit(visual.trunk, name, path)
    _, trunk_sd = trunk_state_dict(sd, visual.trunk)
    d = diff_state(visual.trunk.state_dict(), trunk_sd)
    if d.missing or d.mismatched:
        raise McqError(f"{path}: weights do not fit the {name} of {config.name} ({len(d.missing)} missing, "
                       f"{len(d.mismatched)} of another shape, e.g. {(d.mismatched or d.missing)[0]})")
    visual.trunk.load_state_dict({k: trunk_sd[k] for k in d.matched}, strict=False)
    return visual.trunk, name


def check_vit(trunk: nn.Module, name: str, path: str | Path) -> None:
    """A one-line error unless ``trunk`` is a timm ViT (open_clip's own ViT towers, e.g. ViT-B-16's, are not read)."""
    if not isinstance(trunk, VisionTransformer):
        raise McqError(f"{path}: its encoder {name} ({type(trunk).__name__}) is not a timm ViT; attention "
                       "distance is for timm ViT encoders (vit_b16)")


def load_vit_trunk(path: str | Path) -> tuple[VisionTransformer, str]:
    """The timm ViT trunk (eval mode) and its name from an mcq run's ``.ckpt`` (any task, or a CLIP run) or an
    OpenCLIP checkpoint (see ``mcq.models.clip_init``)."""
    from mcq.tasks.checkpoint import read_checkpoint
    from mcq.tasks.specs import task_spec

    path = Path(path)
    raw = load_state(path)
    if isinstance(raw, dict) and "hyper_parameters" in raw:
        trained = read_checkpoint(path)
        model = trained.model
        if task_spec(trained.task).image_text:  # open_clip's model; a timm image tower keeps its trunk in visual.trunk
            vision = trained.hparams["model"]["cfg"]["vision_cfg"]
            trunk, name = getattr(model.visual, "trunk", model.visual), vision.get(
                "timm_model_name", trained.hparams["model"]["name"])
        else:
            trunk, name = model.encoder.trunk, model.encoder.info.name
    else:
        sd = raw.get("state_dict", raw) if isinstance(raw, dict) else {}
        trunk, name = _vit_from_openclip(path, {k.removeprefix("module."): v for k, v in sd.items()})
    check_vit(trunk, name, path)
    return trunk.eval(), name


def list_images(data: str | Path) -> list[Path]:
    """The images of ``data``: an ADE20K-layout folder's ``images/validation`` (or ``seg/images/validation`` under a
    ``mcq data synth clip`` folder), else the image files directly in ``data``."""
    data = Path(data)
    for sub in ("images/validation", "seg/images/validation"):
        if (data / sub).is_dir():
            data = data / sub
            break
    if not data.is_dir():
        raise McqError(f"{data}: no such folder of images")
    files = sorted(p for p in data.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise McqError(f"{data}: no images ({', '.join(IMAGE_SUFFIXES)}); give an ADE20K-layout folder or a folder "
                       "of images")
    return files


def _load_image(path: Path, size: int, mean, std) -> torch.Tensor:
    from torchvision.transforms import functional as TF

    try:
        image = Image.open(path).convert("RGB")
    except Exception as e:  # noqa: BLE001 - any decoding failure is the file's fault
        raise McqError(f"{path}: cannot read image ({e})") from e
    x = TF.to_tensor(image.resize((size, size), Image.BILINEAR))
    return TF.normalize(x, mean, std)


def analyze_attention_distance(checkpoint: str | Path, data: str | Path, n_images: int = 32,
                               out: str | Path | None = None, img_size: int | None = None,
                               batch_size: int = 8) -> dict:
    """Mean attention distance per layer and head of the ViT in ``checkpoint`` over the first ``n_images`` images
    of ``data`` at ``img_size`` (default: the trunk's own); with ``out``: ``attention_distance.json`` and
    ``attention_distance.png`` there."""
    from timm.data import resolve_data_config

    if n_images < 1:
        raise McqError(f"--images {n_images}: give at least one image")
    trunk, name = load_vit_trunk(checkpoint)
    files = list_images(data)[:n_images]
    size = img_size or trunk.patch_embed.img_size[0]
    stride = trunk.feature_info[-1]["reduction"]
    if size % stride:
        raise McqError(f"--img-size {size}: use a multiple of the patch stride {stride}")
    cfg = resolve_data_config({}, model=trunk)
    total = None
    for i in tqdm(range(0, len(files), batch_size), desc="attention distance", unit="batch"):
        images = torch.stack([_load_image(f, size, cfg["mean"], cfg["std"]) for f in files[i:i + batch_size]])
        d = trunk_attention_distance(trunk, images).sum(0)
        total = d if total is None else total + d
    per_head = (total / len(files)).tolist()
    grid = (size // stride, size // stride)
    result = {"checkpoint": str(checkpoint), "encoder": name, "data": str(data), "images": len(files),
              "img_size": size, "patch_stride": stride, "prefix_tokens": "excluded, patch weights renormalised",
              "layers": len(per_head), "heads": len(per_head[0]), "mean_distance_px": per_head,
              "layer_mean_px": [sum(h) / len(h) for h in per_head],
              "uniform_px": float(patch_distances(grid, stride).mean())}
    if out:
        out = Path(out)
        write_json(out / "attention_distance.json", result)
        plot_attention_distance(result, out / "attention_distance.png")
        result["outputs"] = {"json": str(out / "attention_distance.json"), "plot": str(out / "attention_distance.png")}
    return result


def plot_attention_distance(result: dict, path: str | Path) -> None:
    """The paper's Fig. 3 style: network depth (layer) on x, one dot per head, mean attention distance (px) on y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for layer, heads in enumerate(result["mean_distance_px"], start=1):
        ax.scatter([layer] * len(heads), heads, s=14, color="C0", alpha=0.8)
    ax.axhline(result["uniform_px"], color="0.5", linestyle="--", linewidth=1, label="uniform attention")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("layer (network depth)")
    ax.set_ylabel("mean attention distance (px)")
    ax.set_title(f"{result['encoder']}: {result['images']} images, {result['img_size']} px", fontsize=9)
    ax.set_xticks(range(1, result["layers"] + 1))
    ax.set_ylim(0, result["img_size"] * 0.75)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
