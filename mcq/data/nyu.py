"""NYU Depth v2 in the layout BTS and GLPDepth use, or any dataset laid out the same way.

    ROOT/sync/<scene>/rgb_NNNNN.jpg, sync_depth_NNNNN.png            training frames
    ROOT/nyudepthv2_train_files_with_gt.txt                          BTS's list:
        "/<scene>/rgb_N.jpg /<scene>/sync_depth_N.png FOCAL"
    ROOT/official_splits/test/<scene>/rgb_NNNNN.jpg, sync_depth_NNNNN.png   the 654 test frames

Depth PNGs are 16-bit, single channel, in millimetres (0 = no measurement); samples hold metres.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from mcq.data.ade20k import read_image
from mcq.errors import McqError

TRAIN_LIST = "nyudepthv2_train_files_with_gt.txt"
TEST_DIR = Path("official_splits") / "test"
SPLITS = ("train", "test")


def read_depth(path: Path) -> np.ndarray:
    """A 16-bit depth PNG in millimetres as float32 metres; any other kind of image is a one-line error."""
    try:
        with Image.open(path) as im:
            im.load()
            mode, depth = im.mode, np.array(im)
    except Exception as e:  # noqa: BLE001
        raise McqError(f"{path}: unreadable or truncated depth PNG ({e})") from e
    if not mode.startswith("I;16"):
        raise McqError(f"{path}: depth must be a 16-bit single-channel PNG in millimetres, got a {mode!r} image "
                       f"({depth.dtype}, shape {depth.shape})")
    return depth.astype(np.float32) / 1000.0


def _train_pairs(root: Path) -> list[tuple[Path, Path]]:
    listing = root / TRAIN_LIST
    if not listing.is_file():
        raise McqError(f"{listing}: missing; a NYUv2 dataset needs the BTS train file list beside sync/ "
                       f"(`mcq data synth depth --out DIR` writes one)")
    pairs = []
    for n, line in enumerate(listing.read_text().splitlines(), 1):
        cols = line.split()
        if not cols:
            continue
        if len(cols) < 2:
            raise McqError(f"{listing}:{n}: expected 'RGB DEPTH [FOCAL]', got {line!r}")
        if cols[1] != "None":  # BTS's lists mark frames without ground truth so
            pairs.append((root / "sync" / cols[0].lstrip("/"), root / "sync" / cols[1].lstrip("/")))
    if not pairs:
        raise McqError(f"{listing}: no frames listed")
    return pairs


def _test_pairs(root: Path) -> list[tuple[Path, Path]]:
    test = root / TEST_DIR
    if not test.is_dir():
        raise McqError(f"{test}: missing; a NYUv2 dataset needs "
                       "official_splits/test/<scene>/rgb_*.jpg + sync_depth_*.png")
    images = sorted(test.glob("*/rgb_*.jpg"))
    if not images:
        raise McqError(f"{test}: no test frames (<scene>/rgb_*.jpg)")
    return [(p, p.with_name(p.name.replace("rgb_", "sync_depth_", 1)).with_suffix(".png")) for p in images]


class NYUv2(Dataset):
    """(image, depth in metres) pairs of one split; ``transform(image: PIL, depth: np.ndarray) -> (Tensor, Tensor)``."""

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None):
        self.root = Path(root)
        if split not in SPLITS:
            raise McqError(f"unknown split {split!r}; use one of {SPLITS}")
        if not self.root.is_dir():
            raise McqError(f"{self.root}: no such dataset folder (NYUv2 layout: sync/, {TRAIN_LIST}, {TEST_DIR}/)")
        self.pairs = _train_pairs(self.root) if split == "train" else _test_pairs(self.root)
        for image, depth in self.pairs:
            for path in (image, depth):
                if not path.is_file():
                    raise McqError(f"{path}: listed frame is missing; add it or remove {image.name} from the split")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, depth_path = self.pairs[i]
        image, depth = read_image(image_path), read_depth(depth_path)
        if image.size != (depth.shape[1], depth.shape[0]):
            raise McqError(f"{depth_path}: depth is {depth.shape[1]}x{depth.shape[0]}, "
                           f"image is {image.size[0]}x{image.size[1]}")
        return self.transform(image, depth) if self.transform else (image, depth)
