"""Classification data in ImageNet's folder layout, or any dataset laid out the same way.

    ROOT/train/<class>/*.JPEG      (the class folders' names, sorted, are the classes: wnids for ImageNet)
    ROOT/val/<class>/*.JPEG        (ImageNet's val set sorted into class folders, as timm and torchvision expect)

or a single split, ``ROOT/<class>/*`` (``split=None``), as zero-shot evaluation takes it.
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

    def __init__(self, root: str | Path, split: str | None = "train", transform: Callable | None = None):
        self.root = Path(root)
        if split is not None and split not in SPLITS:
            raise McqError(f"unknown split {split!r}; use one of {SPLITS}")
        here = self.root / split if split else self.root
        self.classes = _class_folders(self.root / "train") if split else _class_folders(here, single=True)
        folders = self.classes if split in ("train", None) else _class_folders(here)
        unknown = sorted(set(folders) - set(self.classes))
        if unknown:
            raise McqError(f"{here / unknown[0]}: class folder not in train/ ({len(unknown)} such)")
        index = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = []
        for c in folders:
            images = sorted(p for p in (here / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise McqError(f"{here / c}: empty class folder (no .JPEG/.jpg/.png images); add images or remove it")
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


def _class_folders(split_dir: Path, single: bool = False) -> list[str]:
    if not split_dir.is_dir():
        layout = "<class>/ folders of images" if single else "train/<class>/ and val/<class>/ folders (ImageNet layout)"
        raise McqError(f"{split_dir}: missing; a classification dataset needs {layout}; `mcq data synth "
                       f"{'clip' if single else 'cls'} --out DIR` writes one")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise McqError(f"{split_dir}: no class folders")
    return classes
