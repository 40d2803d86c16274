"""ADE20K in its official layout, or any dataset laid out the same way.

    ROOT/images/{training,validation}/NAME.jpg
    ROOT/annotations/{training,validation}/NAME.png   (0 = ignore, 1..N = classes)
    ROOT/objectInfo150.txt                             (optional: class names, one row per class)

Labels are shifted as mmseg's ``reduce_zero_label`` does: 0 -> 255 (ignored), k -> k-1.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from mcq.errors import McqError

IGNORE_INDEX = 255
SPLITS = ("training", "validation")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def ade20k_class_names() -> list[str]:
    return resources.files("mcq.data").joinpath("ade20k_classes.txt").read_text().split("\n")[:-1]


def read_class_names(root: str | Path) -> list[str]:
    """Class names from ``objectInfo150.txt`` (``Idx Ratio Train Val Name`` rows), else ADE20K's 150."""
    info = Path(root) / "objectInfo150.txt"
    if not info.is_file():
        return ade20k_class_names()
    names = []
    for line in info.read_text().splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) < 5:
            if line.strip():
                raise McqError(f"{info}: expected 5 tab-separated columns (Idx Ratio Train Val Name), got {line!r}")
            continue
        names.append(cols[4].split(";")[0].split(",")[0].strip())
    if not names:
        raise McqError(f"{info}: no class rows")
    return names


def write_class_names(root: str | Path, names: list[str]) -> None:
    rows = ["Idx\tRatio\tTrain\tVal\tName"] + [f"{i + 1}\t0\t0\t0\t{n}" for i, n in enumerate(names)]
    (Path(root) / "objectInfo150.txt").write_text("\n".join(rows) + "\n")


def read_image(path: Path) -> Image.Image:
    """Open an image as RGB (grayscale and RGBA are converted); a broken file is a one-line error."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:  # noqa: BLE001
        raise McqError(f"{path}: unreadable or truncated image ({e}); re-export or remove it") from e


def read_mask(path: Path, num_classes: int) -> np.ndarray:
    """Read an ADE20K mask and shift its labels; labels beyond the classes are a one-line error."""
    try:
        with Image.open(path) as im:
            im.load()
            mask = np.array(im)
    except Exception as e:  # noqa: BLE001
        raise McqError(f"{path}: unreadable or truncated mask ({e})") from e
    if mask.ndim != 2:
        raise McqError(f"{path}: a mask must be a single-channel PNG of class indices, got shape {mask.shape}")
    mask = mask.astype(np.int64)
    bad = (mask > num_classes) & (mask != IGNORE_INDEX)
    if bad.any():
        raise McqError(
            f"{path}: label {int(mask[bad].max())} is outside the {num_classes} classes "
            f"(expected 0 = ignore, 1..{num_classes}, or 255); fix the mask or objectInfo150.txt"
        )
    out = mask - 1
    out[(mask == 0) | (mask == IGNORE_INDEX)] = IGNORE_INDEX
    return out.astype(np.uint8)


class ADE20K(Dataset):
    """(image, mask) pairs of one split; ``transform(image: PIL, mask: np.ndarray) -> (Tensor, Tensor)``."""

    def __init__(self, root: str | Path, split: str = "training", transform: Callable | None = None):
        self.root = Path(root)
        if split not in SPLITS:
            raise McqError(f"unknown split {split!r}; use one of {SPLITS}")
        img_dir, ann_dir = self.root / "images" / split, self.root / "annotations" / split
        for d in (img_dir, ann_dir):
            if not d.is_dir():
                raise McqError(
                    f"{d}: missing; a dataset needs images/{split} and annotations/{split} "
                    f"(ADEChallengeData2016 layout; `mcq data synth seg --out DIR` writes one)"
                )
        self.images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.images:
            raise McqError(f"{img_dir}: no images (.jpg/.png)")
        self.masks = [ann_dir / (p.stem + ".png") for p in self.images]
        for img, mask in zip(self.images, self.masks):
            if not mask.is_file():
                raise McqError(f"{img}: no mask at {mask}; add it or remove the image")
        self.class_names = read_class_names(self.root)
        self.num_classes = len(self.class_names)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = read_image(self.images[i])
        mask = read_mask(self.masks[i], self.num_classes)
        if image.size != (mask.shape[1], mask.shape[0]):
            raise McqError(f"{self.masks[i]}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                           f"image is {image.size[0]}x{image.size[1]}")
        return self.transform(image, mask) if self.transform else (image, mask)
