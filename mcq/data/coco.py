"""COCO instance annotations in the official layout, or any dataset laid out the same way.

    ROOT/annotations/instances_{train,val}2017.json    images, annotations (polygons or RLE), categories
    ROOT/{train,val}2017/*.jpg                          the images named by ``file_name``

Annotations are read with pycocotools' COCO API and masks decoded with ``pycocotools.mask`` (polygons, uncompressed
and compressed RLE). Category ids (COCO's 1..90 with gaps) become contiguous labels 1..K; 0 is the background, as
torchvision's detection models expect. Crowd regions (``iscrowd: 1``) are not training targets; the evaluation reads
them from the annotation file, as COCOeval does. Training skips images without any box to learn from (as
torchvision's and mmdet's COCO training do); validation keeps every image.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from mcq.data.ade20k import read_image
from mcq.errors import McqError

SPLITS = ("train", "val")
YEAR = "2017"
BOX_TOLERANCE = 1.0  # pixels a box may stick out of its image (rounding in real annotation files); then clipped


def annotation_file(root: str | Path, split: str) -> Path:
    return Path(root) / "annotations" / f"instances_{split}{YEAR}.json"


def require_pycocotools() -> None:
    """pycocotools is the ``det`` extra: say how to get it rather than fail on an import."""
    try:
        import pycocotools  # noqa: F401
    except ImportError as e:
        raise McqError("detection needs pycocotools: pip install 'mcq[det]'") from e


def load_coco(path: Path):
    """pycocotools' COCO index of ``path``, after checking what mcq relies on; every problem is a one-line error
    naming the file (and the annotation, where one is at fault)."""
    require_pycocotools()
    from pycocotools.coco import COCO

    if not path.is_file():
        raise McqError(f"{path}: missing; a COCO dataset needs annotations/instances_{{train,val}}{YEAR}.json "
                       f"(`mcq data synth det --out DIR` writes one)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise McqError(f"{path}: not a JSON annotation file ({e})") from e
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ("images", "annotations", "categories")):
        raise McqError(f"{path}: not a COCO instances file (needs lists 'images', 'annotations', 'categories')")
    if not data["images"]:
        raise McqError(f"{path}: empty image list")
    if not data["categories"]:
        raise McqError(f"{path}: no categories")
    try:
        images = {im["id"]: (im["file_name"], float(im["width"]), float(im["height"])) for im in data["images"]}
        categories = {c["id"] for c in data["categories"]}
        for a in data["annotations"]:
            _check_annotation(a, images, categories)
    except (KeyError, TypeError, ValueError) as e:
        raise McqError(f"{path}: malformed entry ({type(e).__name__}: {e})") from e
    except McqError as e:
        raise McqError(f"{path}: {e}") from None
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco.createIndex()
    return coco


def _check_annotation(a: dict, images: dict, categories: set) -> None:
    if a["image_id"] not in images:
        raise McqError(f"annotation {a['id']}: image_id {a['image_id']} is not in 'images'")
    if a["category_id"] not in categories:
        raise McqError(f"annotation {a['id']}: category_id {a['category_id']} is not in 'categories'")
    name, width, height = images[a["image_id"]]
    x, y, w, h = map(float, a["bbox"])
    t = BOX_TOLERANCE
    if w < 0 or h < 0 or x < -t or y < -t or x + w > width + t or y + h > height + t:
        raise McqError(f"annotation {a['id']}: box [x y w h] = {a['bbox']} is outside its {width:g}x{height:g} "
                       f"image {name}")
    if not isinstance(a.get("segmentation", []), (list, dict)):
        raise McqError(f"annotation {a['id']}: 'segmentation' must be polygons (a list) or RLE (a dict)")


def uncompressed_rle(mask: np.ndarray) -> dict:
    """A binary H x W mask as uncompressed RLE, as COCO writes crowd regions: ``counts`` is a list of run lengths over
    the column-major pixels, starting with a (maybe empty) run of background."""
    flat = mask.astype(bool).T.ravel()
    edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
    return {"size": list(mask.shape), "counts": ([0] if flat[0] else []) + runs.tolist()}


def decode_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """A H x W uint8 mask from polygons, uncompressed RLE (``counts`` a list) or compressed RLE (a string)."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):  # polygons: several parts of one object are merged
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width)) if segmentation else None
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    if rle is None:
        return np.zeros((height, width), np.uint8)
    return mask_utils.decode(rle)


class COCODetection(Dataset):
    """(image, target) pairs of one split. ``target``: ``boxes`` (N x 4, xyxy, pixels), ``labels`` (N, 1..K),
    ``masks`` (N x H x W, uint8), ``image_id``; ``transform(image: PIL, target) -> (Tensor, target)``."""

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None):
        self.root = Path(root)
        if split not in SPLITS:
            raise McqError(f"unknown split {split!r}; use one of {SPLITS}")
        if not self.root.is_dir():
            raise McqError(f"{self.root}: no such dataset folder (COCO layout: annotations/, train{YEAR}/, val{YEAR}/)")
        self.annotation_file = annotation_file(self.root, split)
        self.coco = load_coco(self.annotation_file)
        self.image_dir = self.root / f"{split}{YEAR}"
        if not self.image_dir.is_dir():
            raise McqError(f"{self.image_dir}: missing; the images of {self.annotation_file.name} go there")
        cats = sorted(self.coco.getCatIds())
        self.category_ids = cats  # label k (1..K) is category cats[k - 1]
        self.label_of = {c: i + 1 for i, c in enumerate(cats)}
        self.class_names = [self.coco.cats[c]["name"] for c in cats]
        ids = sorted(self.coco.getImgIds())
        if split == "train":
            ids = [i for i in ids if any(_usable(a) for a in self.coco.imgToAnns[i])]
            if not ids:
                raise McqError(f"{self.annotation_file}: no training image has a (non-crowd) box")
        for i in ids:
            path = self.image_dir / self.coco.imgs[i]["file_name"]
            if not path.is_file():
                raise McqError(f"{path}: listed in {self.annotation_file.name} (image {i}) but missing")
        self.ids = ids
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        image_id = self.ids[i]
        info = self.coco.imgs[image_id]
        path = self.image_dir / info["file_name"]
        image = read_image(path)
        w, h = info["width"], info["height"]
        if image.size != (w, h):
            raise McqError(f"{path}: image is {image.size[0]}x{image.size[1]}, "
                           f"{self.annotation_file.name} says {w}x{h}")
        anns = [a for a in self.coco.imgToAnns[image_id] if _usable(a)]
        try:
            masks = (np.stack([decode_mask(a["segmentation"], h, w) for a in anns]) if anns
                     else np.zeros((0, h, w), np.uint8))
        except Exception as e:  # noqa: BLE001 - pycocotools' errors on malformed polygons / RLE
            raise McqError(f"{self.annotation_file}: a segmentation of image {image_id} ({info['file_name']}) does not "
                           f"decode ({type(e).__name__}: {e})") from e
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2].clamp_(0, w)
        boxes[:, 1::2].clamp_(0, h)
        target = {
            "boxes": boxes,
            "labels": torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64),
            "masks": torch.from_numpy(masks),
            "image_id": image_id,
        }
        return self.transform(image, target) if self.transform else (image, target)


def _usable(a: dict) -> bool:
    """A training target: not a crowd region, and a box of positive size."""
    return not a.get("iscrowd", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0
