"""Classification data in ImageNet's folder layout, or any dataset laid out the same way.

    ROOT/train/<class>/*.JPEG      (the class folders' names, sorted, are the classes: wnids for ImageNet)
    ROOT/val/<class>/*.JPEG        (ImageNet's val set sorted into class folders, as timm and torchvision expect)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset

from mcq.data.ade20k import read_image
from mcq.errors import McqError

SPLITS = ("train", "val")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


class ImageFolder(Dataset):
    """(image, class index) pairs of one split; ``transform(image: PIL) -> Tensor``. ``classes`` are the training
    split's folders, so both splits number them alike; a validation folder of an unknown class is an error."""

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None):
        self.root = Path(root)
        if split not in SPLITS:
            raise McqError(f"unknown split {split!r}; use one of {SPLITS}")
        self.classes = _class_folders(self.root / "train")
        folders = self.classes if split == "train" else _class_folders(self.root / split)
        unknown = sorted(set(folders) - set(self.classes))
        if unknown:
            raise McqError(f"{self.root / split / unknown[0]}: class folder not in train/ ({len(unknown)} such)")
        index = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = []
        for c in folders:
            images = sorted(p for p in (self.root / split / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise McqError(f"{self.root / split / c}: empty class folder (no .JPEG/.jpg/.png images); add images or remove it")
            self.samples += [(p, index[c]) for p in images]
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        image = read_image(path)
        return (self.transform(image) if self.transform else image), label


def _class_folders(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise McqError(f"{split_dir}: missing; a classification dataset needs train/<class>/ and val/<class>/ folders "
                       f"(ImageNet layout; `mcq data synth cls --out DIR` writes one)")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise McqError(f"{split_dir}: no class folders")
    return classes
