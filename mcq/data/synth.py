"""The embedded default dataset: procedurally drawn scenes in the ADE20K layout.

Each scene has a sky above a horizon, grass or road below it, and a few objects (sun, house, tree,
rock, water). Classes differ by colour and texture with per-image jitter, so a small model learns
them in minutes on a CPU while still having to look at texture and shape.
"""

from __future__ import annotations

import colorsys
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from mcq.data.ade20k import write_class_names
from mcq.io import staged_dir

SEG_CLASSES = ["sky", "grass", "road", "water", "sun", "house", "tree", "rock"]
# (hue, saturation, value) per class, and the texture drawn over it
_STYLE = {
    "sky": ((0.58, 0.45, 0.95), "smooth"),
    "grass": ((0.30, 0.70, 0.60), "noise"),
    "road": ((0.08, 0.05, 0.40), "stripes"),
    "water": ((0.50, 0.80, 0.75), "waves"),
    "sun": ((0.15, 0.85, 1.00), "smooth"),
    "house": ((0.00, 0.75, 0.70), "bricks"),
    "tree": ((0.35, 0.80, 0.30), "noise"),
    "rock": ((0.10, 0.15, 0.55), "speckle"),
}


def _texture(kind: str, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    f = rng.uniform(0.8, 1.25)
    if kind == "noise":
        return rng.normal(0, 0.12, yy.shape)
    if kind == "stripes":
        return 0.15 * np.sign(np.sin(xx * 0.5 * f))
    if kind == "waves":
        return 0.12 * np.sin(yy * 0.6 * f + 3 * np.sin(xx * 0.08))
    if kind == "bricks":
        return -0.25 * (((yy // (6 * f)) % 2 == 0) & (xx % 12 < 2) | (yy % (6 * f) < 1.2))
    if kind == "speckle":
        return 0.3 * (rng.random(yy.shape) > 0.9) - 0.1
    return np.zeros(yy.shape)


def _paint(img: np.ndarray, lab: np.ndarray, region: np.ndarray, cls: str, rng: np.random.Generator) -> None:
    (h, s, v), tex = _STYLE[cls]
    h = (h + rng.uniform(-0.02, 0.02)) % 1.0
    s = float(np.clip(s + rng.uniform(-0.1, 0.1), 0, 1))
    v = float(np.clip(v + rng.uniform(-0.1, 0.1), 0.1, 1))
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]].astype(np.float32)
    shade = np.clip(v + _texture(tex, yy, xx, rng), 0, 1)
    rgb = np.array(colorsys.hsv_to_rgb(h, s, 1.0), dtype=np.float32)
    img[region] = (shade[..., None] * rgb)[region]
    lab[region] = SEG_CLASSES.index(cls) + 1  # ADE20K convention: 0 = ignore


def synth_scene(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One RGB uint8 image and its ADE20K-style mask (0 = ignore, 1..N = classes)."""
    img = np.zeros((size, size, 3), np.float32)
    lab = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    horizon = int(size * rng.uniform(0.3, 0.6)) + (np.sin(xx[0] / size * rng.uniform(2, 6)) * size * 0.04).astype(int)
    sky = yy < horizon[None, :]
    _paint(img, lab, sky, "sky", rng)
    _paint(img, lab, ~sky, str(rng.choice(["grass", "road"])), rng)
    if rng.random() < 0.6:
        cx, cy, r = rng.uniform(0.1, 0.9) * size, rng.uniform(0.05, 0.25) * size, rng.uniform(0.05, 0.12) * size
        _paint(img, lab, ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r) & sky, "sun", rng)
    if rng.random() < 0.5:
        top = int(horizon.mean() + rng.uniform(0.05, 0.2) * size)
        _paint(img, lab, (yy > top) & (np.abs(np.sin(xx / size * 3 + rng.uniform(0, 6))) < 0.5), "water", rng)
    for _ in range(rng.integers(1, 4)):
        kind = str(rng.choice(["house", "tree", "rock"]))
        cx, base = rng.uniform(0.1, 0.9) * size, rng.uniform(0.55, 0.95) * size
        w, h = rng.uniform(0.1, 0.25) * size, rng.uniform(0.1, 0.3) * size
        if kind == "house":
            region = (np.abs(xx - cx) < w / 2) & (yy < base) & (yy > base - h)
            region |= (yy <= base - h) & (yy > base - h - w / 2) & (np.abs(xx - cx) < (yy - (base - h - w / 2)))
        elif kind == "tree":
            region = ((xx - cx) / (w / 2)) ** 2 + ((yy - (base - h)) / (h / 1.5)) ** 2 < 1
        else:
            region = ((xx - cx) / (w / 2)) ** 2 + ((yy - base) / (h / 3)) ** 2 < 1
        _paint(img, lab, region, kind, rng)
    lab[:2, :] = 0  # a thin unlabelled band, as real annotations have
    img = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    return (img * 255).astype(np.uint8), lab


def synth_seg(out: str | Path, n_train: int = 240, n_val: int = 48, size: int = 256, seed: int = 0) -> Path:
    """Write a synthetic segmentation dataset in the ADE20K layout to ``out``; return ``out``."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    with staged_dir(out) as tmp:
        for split, n in (("training", n_train), ("validation", n_val)):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "annotations" / split).mkdir(parents=True)
            for i in tqdm(range(n), desc=f"synth seg {split}", unit="img", leave=False):
                img, lab = synth_scene(size, rng)
                name = f"ADE_{split[:5]}_{i:08d}"
                Image.fromarray(img).save(tmp / "images" / split / f"{name}.jpg", quality=95)
                Image.fromarray(lab).save(tmp / "annotations" / split / f"{name}.png")
        write_class_names(tmp, SEG_CLASSES)
    return out


def default_seg_data() -> Path:
    """The embedded dataset, written once to ``$MCQ_HOME/synth-seg`` (default ``~/.cache/mcq``)."""
    root = Path(os.environ.get("MCQ_HOME", Path.home() / ".cache" / "mcq")) / "synth-seg"
    if not (root / "objectInfo150.txt").is_file():
        synth_seg(root)
    return root
