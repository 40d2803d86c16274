"""The embedded default datasets, procedurally drawn, each in its real dataset's layout.

Segmentation (ADE20K layout): a sky above a horizon, grass or road below it, and a few objects (sun, house,
tree, rock, water). Classes differ by colour and texture with per-image jitter, so a small model learns them in
minutes on a CPU while still having to look at texture and shape.
Depth (NYUv2 layout): a room seen by a pinhole camera (floor, ceiling, walls, boxes, a ball), depth known exactly.
Classification (ImageFolder layout): ten classes of shapes and patterns in random colours, places and sizes.
Detection (COCO layout): a few shapes of four classes, each with its own colour, at random places and sizes, masks
as polygons (ring: RLE, it has a hole).
"""

from __future__ import annotations

import colorsys
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from tqdm import tqdm

from mcq.data.ade20k import write_class_names
from mcq.data.coco import annotation_file, decode_mask, require_pycocotools, uncompressed_rle
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


def paint(img: np.ndarray, lab: np.ndarray, region: np.ndarray, cls: str, rng: np.random.Generator,
           hsv: tuple[float, float, float] | None = None) -> None:
    """Paint ``region`` as class ``cls``: its texture, in its own colour or in ``hsv``, with a little jitter."""
    (h, s, v), tex = _STYLE[cls]
    h, s, v = hsv or (h, s, v)
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
    paint(img, lab, sky, "sky", rng)
    paint(img, lab, ~sky, str(rng.choice(["grass", "road"])), rng)
    if rng.random() < 0.6:
        cx, cy, r = rng.uniform(0.1, 0.9) * size, rng.uniform(0.05, 0.25) * size, rng.uniform(0.05, 0.12) * size
        paint(img, lab, ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r) & sky, "sun", rng)
    if rng.random() < 0.5:
        top = int(horizon.mean() + rng.uniform(0.05, 0.2) * size)
        paint(img, lab, (yy > top) & (np.abs(np.sin(xx / size * 3 + rng.uniform(0, 6))) < 0.5), "water", rng)
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
        paint(img, lab, region, kind, rng)
    lab[:2, :] = 0  # a thin unlabelled band, as real annotations have
    img = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    return (img * 255).astype(np.uint8), lab


def synth_seg(out: str | Path, n_train: int = 240, n_val: int = 48, size: int = 256, seed: int = 0) -> Path:
    """Write a synthetic segmentation dataset in the ADE20K layout to ``out``; return ``out``."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    with staged_dir(out) as tmp:
        write_ade20k(tmp, (n_train, n_val), lambda: synth_scene(size, rng), "synth seg")
    return out


def write_ade20k(root: Path, counts: tuple[int, int], scene: Callable[[], tuple[np.ndarray, np.ndarray]],
                 desc: str) -> None:
    """Write ``counts`` (training, validation) frames drawn from ``scene()`` (RGB uint8 image, uint8 labels) under
    ``root`` in the ADE20K layout, with the class names of ``SEG_CLASSES``."""
    for split, n in zip(("training", "validation"), counts):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in tqdm(range(n), desc=f"{desc} {split}", unit="img", leave=False):
            img, lab = scene()
            name = f"ADE_{split[:5]}_{i:08d}"
            Image.fromarray(img).save(root / "images" / split / f"{name}.jpg", quality=95)
            Image.fromarray(lab).save(root / "annotations" / split / f"{name}.png")
    write_class_names(root, SEG_CLASSES)


def mcq_home() -> Path:
    """Where the embedded datasets are written: ``$MCQ_HOME``, default ``~/.cache/mcq``."""
    return Path(os.environ.get("MCQ_HOME", Path.home() / ".cache" / "mcq"))


def default_seg_data() -> Path:
    """The embedded dataset, written once to ``$MCQ_HOME/synth-seg`` (default ``~/.cache/mcq``)."""
    root = mcq_home() / "synth-seg"
    if not (root / "objectInfo150.txt").is_file():
        synth_seg(root)
    return root


# --- depth: a room in front of a pinhole camera, NYUv2's intrinsics scaled to the image ------------------------

NYU_FOCAL, NYU_WIDTH = 518.8579, 640


def synth_room(width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One RGB uint8 image (``width`` x 3/4 ``width``) and its depth in metres (z along the optical axis)."""
    h = width * 3 // 4
    f = NYU_FOCAL * width / NYU_WIDTH
    v, u = np.mgrid[:h, :width].astype(np.float64)
    dx, dy = (u - width / 2 + 0.5) / f, -(v - h / 2 + 0.5) / f  # ray (dx, dy, 1), y up
    half_w, cam_h, room_h, back = (rng.uniform(1.4, 3.0), rng.uniform(1.0, 1.6), rng.uniform(2.4, 3.2),
                                   rng.uniform(4.0, 9.0))
    with np.errstate(divide="ignore"):
        planes = {  # depth at which each ray meets each surface (inf: never)
            "wall": np.where(dx != 0, half_w / np.abs(dx), np.inf),
            "floor": np.where(dy < 0, cam_h / -dy, np.inf),
            "ceiling": np.where(dy > 0, (room_h - cam_h) / dy, np.inf),
            "back": np.full_like(dx, back),
        }
    names = list(planes)
    stack = np.stack([planes[n] for n in names])
    depth, surface = stack.min(0), stack.argmin(0)
    x, y = dx * depth, dy * depth
    img = np.zeros((h, width, 3))
    for k, name in enumerate(names):  # each surface: its own colour and a texture in world units
        rgb = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 0.6), rng.uniform(0.5, 0.9)))
        tile = rng.uniform(0.3, 0.7)
        a, b = {"wall": (depth, y), "floor": (x, depth), "ceiling": (x, depth), "back": (x, y)}[name]
        pattern = 0.8 + 0.2 * (((a // tile) + (b // tile)) % 2)
        img[surface == k] = (pattern[..., None] * rgb)[surface == k]
    for _ in range(rng.integers(1, 4)):  # boxes standing on the floor, front faces towards the camera
        z0, xc = rng.uniform(1.5, back - 0.3), rng.uniform(-half_w, half_w)
        bw, bh = rng.uniform(0.4, 1.2), rng.uniform(0.4, 1.4)
        hit = (np.abs(dx * z0 - xc) < bw / 2) & (dy * z0 > -cam_h) & (dy * z0 < -cam_h + bh) & (z0 < depth)
        depth[hit] = z0
        img[hit] = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.5, 0.9), rng.uniform(0.4, 0.9))
    c = np.array([rng.uniform(-1, 1), rng.uniform(-cam_h + 0.3, 0.5), rng.uniform(1.5, back - 1)])  # a ball
    r = rng.uniform(0.2, 0.5)
    d2 = dx**2 + dy**2 + 1
    bq = dx * c[0] + dy * c[1] + c[2]
    disc = bq**2 - d2 * (c @ c - r * r)
    t = (bq - np.sqrt(np.maximum(disc, 0))) / d2
    hit = (disc > 0) & (t < depth)
    depth[hit] = t[hit]
    normal_z = (c[2] - t) / r  # the normal's component towards the camera: bright centre, darker rim
    img[hit] = np.outer(0.3 + 0.7 * np.clip(normal_z[hit], 0, 1), colorsys.hsv_to_rgb(rng.uniform(), 0.8, 0.9))
    img *= (1 / (1 + 0.02 * depth**2))[..., None]  # a light at the camera: far is darker
    img = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    return (img * 255).astype(np.uint8), depth.astype(np.float32)


def _save_frame(folder: Path, i: int, img: np.ndarray, depth: np.ndarray) -> None:
    """rgb_N.jpg and sync_depth_N.png (uint16 millimetres; NYUv2's unmeasured border is 0)."""
    mm = np.clip(np.rint(depth * 1000), 0, 2**16 - 1).astype(np.uint16)
    b = max(1, img.shape[1] // 64)
    mm[:b], mm[-b:], mm[:, :b], mm[:, -b:] = 0, 0, 0, 0
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(folder / f"rgb_{i:05d}.jpg", quality=95)
    Image.fromarray(mm).save(folder / f"sync_depth_{i:05d}.png")


def synth_depth(out: str | Path, n_train: int = 240, n_val: int = 48, size: int = 256, seed: int = 0,
                per_scene: int = 8) -> Path:
    """Write a synthetic depth dataset in the NYUv2 (BTS) layout to ``out``: ``n_train`` training and ``n_val``
    test frames of ``size`` x 3/4 ``size`` pixels."""
    from mcq.data.nyu import TEST_DIR, TRAIN_LIST

    out = Path(out)
    rng = np.random.default_rng(seed)
    focal = NYU_FOCAL * size / NYU_WIDTH
    with staged_dir(out) as tmp:
        lines = []
        for i in tqdm(range(n_train), desc="synth depth train", unit="img", leave=False):
            scene = f"room_{i // per_scene:04d}"
            _save_frame(tmp / "sync" / scene, i, *synth_room(size, rng))
            lines.append(f"/{scene}/rgb_{i:05d}.jpg /{scene}/sync_depth_{i:05d}.png {focal:.4f}")
        (tmp / TRAIN_LIST).write_text("\n".join(lines) + "\n")
        for i in tqdm(range(n_val), desc="synth depth test", unit="img", leave=False):
            _save_frame(tmp / TEST_DIR / f"room_test_{i // per_scene:04d}", i, *synth_room(size, rng))
    return out


def default_depth_data() -> Path:
    """The embedded depth dataset, written once to ``$MCQ_HOME/synth-depth``."""
    from mcq.data.nyu import TRAIN_LIST

    root = mcq_home() / "synth-depth"
    if not (root / TRAIN_LIST).is_file():
        synth_depth(root)
    return root


# --- classification: shapes and patterns ------------------------------------------------------------------------

CLS_CLASSES = ["circle", "square", "triangle", "ring", "cross", "diamond", "hstripes", "vstripes", "checker", "dots"]


def synth_object(cls: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One RGB uint8 image of class ``cls``: a shape (or a patterned patch) on a noisy background."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    r = rng.uniform(0.18, 0.35) * size
    u, v = (xx - cx) / r, (yy - cy) / r
    period = rng.uniform(0.25, 0.45) * r
    region = {
        "circle": u**2 + v**2 < 1,
        "square": np.maximum(np.abs(u), np.abs(v)) < 0.8,
        "triangle": (v < 0.7) & (np.abs(u) < (v + 0.9) * 0.6),
        "ring": np.abs(np.sqrt(u**2 + v**2) - 0.75) < 0.2,
        "cross": (np.minimum(np.abs(u), np.abs(v)) < 0.25) & (np.maximum(np.abs(u), np.abs(v)) < 1),
        "diamond": np.abs(u) + np.abs(v) < 1,
        "hstripes": (np.maximum(np.abs(u), np.abs(v)) < 1) & ((yy // period) % 2 == 0),
        "vstripes": (np.maximum(np.abs(u), np.abs(v)) < 1) & ((xx // period) % 2 == 0),
        "checker": (np.maximum(np.abs(u), np.abs(v)) < 1) & (((xx // period) + (yy // period)) % 2 == 0),
        "dots": (np.maximum(np.abs(u), np.abs(v)) < 1) & ((xx % period - period / 2) ** 2
                                                          + (yy % period - period / 2) ** 2 < (period / 3) ** 2),
    }[cls]
    hue = rng.uniform()
    img = np.empty((size, size, 3))
    img[:] = colorsys.hsv_to_rgb((hue + 0.5) % 1, rng.uniform(0, 0.5), rng.uniform(0.2, 0.8))
    img[region] = colorsys.hsv_to_rgb(hue, rng.uniform(0.5, 1), rng.uniform(0.6, 1))
    return (np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1) * 255).astype(np.uint8)


def synth_cls(out: str | Path, n_train: int = 100, n_val: int = 20, size: int = 128, seed: int = 0) -> Path:
    """Write a synthetic classification dataset in the ImageFolder layout (``train/<class>/*.JPEG``, ``val/...``),
    ``n_train`` and ``n_val`` images per class, to ``out``."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    with staged_dir(out) as tmp:
        for split, n in (("train", n_train), ("val", n_val)):
            for cls in tqdm(CLS_CLASSES, desc=f"synth cls {split}", unit="class", leave=False):
                (tmp / split / cls).mkdir(parents=True)
                for i in range(n):
                    Image.fromarray(synth_object(cls, size, rng)).save(tmp / split / cls / f"{cls}_{i:05d}.JPEG",
                                                                       quality=95)
    return out


def default_cls_data() -> Path:
    """The embedded classification dataset, written once to ``$MCQ_HOME/synth-cls``."""
    root = mcq_home() / "synth-cls"
    if not (root / "val").is_dir():
        synth_cls(root)
    return root


# --- detection: shapes of distinct colours, COCO layout --------------------------------------------------------

DET_CLASSES = ["disc", "square", "triangle", "ring"]
_DET_HUE = {"disc": 0.0, "square": 0.62, "triangle": 0.15, "ring": 0.33}


def _det_segmentation(cls: str, cx: float, cy: float, r: float, size: int) -> list | dict:
    """The COCO segmentation of one shape: polygons ([[x1, y1, x2, y2, ...]]), or for the ring (it has a hole)
    uncompressed RLE."""
    if cls == "ring":
        yy, xx = np.mgrid[:size, :size] + 0.5
        d = np.hypot(xx - cx, yy - cy)
        return uncompressed_rle((d < r) & (d > 0.55 * r))
    corners = {"disc": 24, "square": 4, "triangle": 3}[cls]
    start = {"disc": 0.0, "square": np.pi / 4, "triangle": -np.pi / 2}[cls]
    angles = start + 2 * np.pi * np.arange(corners) / corners
    xy = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1)
    return [np.round(xy, 2).ravel().tolist()]


def synth_det_image(size: int, rng: np.random.Generator, max_objects: int = 4) -> tuple[np.ndarray, list[dict]]:
    """One RGB uint8 image and its objects (``category`` name, ``segmentation``, ``bbox`` [x, y, w, h], ``area``):
    1..``max_objects`` shapes that do not overlap, on a noisy background of a dull colour."""
    from pycocotools import mask as mask_utils

    img = np.empty((size, size, 3))
    img[:] = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0, 0.25), rng.uniform(0.2, 0.6))
    yy = np.linspace(0, 1, size)[:, None, None]
    img *= 0.8 + 0.4 * (yy if rng.random() < 0.5 else 1 - yy)  # light from above or below
    placed: list[tuple[float, float, float]] = []
    objects = []
    for _ in range(rng.integers(1, max_objects + 1)):
        for _try in range(20):  # a place that overlaps no other shape
            r = rng.uniform(0.1, 0.22) * size
            cx, cy = rng.uniform(r, size - r, 2)
            if all(np.hypot(cx - x, cy - y) > r + q + 2 for x, y, q in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        cls = str(rng.choice(DET_CLASSES))
        seg = _det_segmentation(cls, cx, cy, r, size)
        mask = decode_mask(seg, size, size).astype(bool)
        shade = rng.uniform(0.75, 1.0) + rng.normal(0, 0.04, (size, size))
        rgb = colorsys.hsv_to_rgb((_DET_HUE[cls] + rng.uniform(-0.03, 0.03)) % 1, rng.uniform(0.7, 1.0), 1.0)
        img[mask] = shade[mask, None] * np.array(rgb)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        objects.append({"category": cls, "segmentation": seg, "bbox": mask_utils.toBbox(rle).tolist(),
                        "area": float(mask_utils.area(rle))})
    img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
    return (img * 255).astype(np.uint8), objects


def synth_det(out: str | Path, n_train: int = 400, n_val: int = 48, size: int = 128, seed: int = 0) -> Path:
    """Write a synthetic detection dataset in the COCO layout (``annotations/instances_{train,val}2017.json``,
    ``{train,val}2017/*.jpg``) to ``out``; return ``out``."""
    require_pycocotools()
    out = Path(out)
    rng = np.random.default_rng(seed)
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(DET_CLASSES)]
    cat_id = {c["name"]: c["id"] for c in categories}
    with staged_dir(out) as tmp:
        ann_id = 1
        for split, n in (("train", n_train), ("val", n_val)):
            (tmp / f"{split}2017").mkdir(parents=True)
            images, annotations = [], []
            for i in tqdm(range(1, n + 1), desc=f"synth det {split}", unit="img", leave=False):
                img, objects = synth_det_image(size, rng)
                name = f"{i:012d}.jpg"
                Image.fromarray(img).save(tmp / f"{split}2017" / name, quality=95)
                images.append({"id": i, "file_name": name, "width": size, "height": size})
                for o in objects:
                    annotations.append({"id": ann_id, "image_id": i, "category_id": cat_id[o["category"]],
                                        "segmentation": o["segmentation"], "bbox": o["bbox"], "area": o["area"],
                                        "iscrowd": 0})
                    ann_id += 1
            path = annotation_file(tmp, split)
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return out


def default_det_data() -> Path:
    """The embedded detection dataset, written once to ``$MCQ_HOME/synth-det``."""
    root = mcq_home() / "synth-det"
    if not annotation_file(root, "val").is_file():
        synth_det(root)
    return root

