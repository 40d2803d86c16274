"""Joint image/mask transforms of the ADE20K recipe, on torchvision's transforms v2."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2


class SegTransform:
    """Train: random resized crop, flip, photometric distortion. Val: resize the image only (single scale).

    Both normalise with the encoder's mean/std. Validation keeps the mask at its own size: metrics are
    computed at the annotation's resolution, as mmseg does.
    """

    def __init__(
        self, img_size: int, train: bool, mean: Sequence[float], std: Sequence[float],
        crop_scale: Sequence[float] = (0.25, 1.0), crop_ratio: Sequence[float] = (0.75, 1.3333),
    ):
        self.train = train
        geometric = (
            [v2.RandomResizedCrop(img_size, scale=tuple(crop_scale), ratio=tuple(crop_ratio)),
             v2.RandomHorizontalFlip()]
            if train else [v2.Resize((img_size, img_size))]
        )
        photometric = [v2.ColorJitter(brightness=0.125, contrast=0.5, saturation=0.5, hue=0.05)] if train else []
        self.geometric = v2.Compose(geometric)
        self.pixels = v2.Compose(photometric + [v2.ToDtype(torch.float32, scale=True),
                                                v2.Normalize(list(mean), list(std))])

    def __call__(self, image: Image.Image, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.train:
            return self.image_only(image), torch.from_numpy(mask).long()
        img = tv_tensors.Image(v2.functional.pil_to_tensor(image))
        img, target = self.geometric(img, tv_tensors.Mask(torch.from_numpy(mask).long()))
        return self.pixels(img).as_subclass(torch.Tensor), target.as_subclass(torch.Tensor)

    def image_only(self, image: Image.Image) -> torch.Tensor:
        """The validation preprocessing of an image with no mask (prediction)."""
        img = tv_tensors.Image(v2.functional.pil_to_tensor(image))
        return self.pixels(self.geometric(img)).as_subclass(torch.Tensor)


def collate_seg(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Stack images; keep masks as a list (validation masks keep their own sizes)."""
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


class DepthTransform(SegTransform):
    """``SegTransform`` for an image and its depth in metres: the depth travels as integer millimetres, so crops
    resample it nearest (no invented depths at edges). Val resizes the image to ``val_size`` (h, w) and keeps the
    depth at its own size (metrics are computed there)."""

    def __init__(
        self, img_size: int, train: bool, mean: Sequence[float], std: Sequence[float],
        crop_scale: Sequence[float] = (0.5, 1.0), crop_ratio: Sequence[float] = (0.75, 1.3333),
        val_size: tuple[int, int] | None = None,
    ):
        super().__init__(img_size, train, mean, std, crop_scale, crop_ratio)
        if not train and val_size:
            self.geometric = v2.Compose([v2.Resize(val_size)])

    def __call__(self, image: Image.Image, depth: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        img, mm = super().__call__(image, np.rint(depth * 1000).astype(np.int64))
        return img, mm.float() / 1000


class ClsTransform:
    """Train: random resized crop and flip. Val: resize to ``img_size / crop_pct``, centre crop (timm's eval)."""

    def __init__(
        self, img_size: int, train: bool, mean: Sequence[float], std: Sequence[float],
        crop_scale: Sequence[float] = (0.08, 1.0), crop_ratio: Sequence[float] = (0.75, 1.3333),
        crop_pct: float = 0.875,
    ):
        geometric = (
            [v2.RandomResizedCrop(img_size, scale=tuple(crop_scale), ratio=tuple(crop_ratio)),
             v2.RandomHorizontalFlip()]
            if train else [v2.Resize(round(img_size / crop_pct)), v2.CenterCrop(img_size)]
        )
        self.transform = v2.Compose([v2.PILToTensor(), *geometric, v2.ToDtype(torch.float32, scale=True),
                                     v2.Normalize(list(mean), list(std))])

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.transform(image)


class DetTransform:
    """Detection: train with large-scale jitter as ViTDet does (the image resized to fit ``img_size`` x ``img_size``
    times a random scale in ``scale_range``, a random ``img_size`` square crop, padded where the image is smaller,
    and a flip; boxes and masks follow, and objects cropped away are dropped). Val: the image as it is; the model
    resizes it (its long side to ``img_size``) and returns boxes and masks in the image's own pixels, which is
    where COCOeval compares them. Images come out as float RGB in [0, 1]: the model normalises them."""

    def __init__(self, img_size: int, train: bool, scale_range: Sequence[float] = (0.5, 2.0)):
        geometric = [
            v2.ScaleJitter((img_size, img_size), scale_range=tuple(scale_range)),
            v2.RandomCrop(img_size, pad_if_needed=True),
            v2.RandomHorizontalFlip(),
            v2.SanitizeBoundingBoxes(min_size=1),
        ] if train else []
        self.transform = v2.Compose([*geometric, v2.ToDtype(torch.float32, scale=True)])

    def __call__(self, image: Image.Image, target: dict) -> tuple[torch.Tensor, dict]:
        img = tv_tensors.Image(v2.functional.pil_to_tensor(image))
        h, w = img.shape[-2:]
        target = {**target, "boxes": tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(h, w)),
                  "masks": tv_tensors.Mask(target["masks"])}
        img, target = self.transform(img, target)
        plain = {k: v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v for k, v in target.items()}
        return img.as_subclass(torch.Tensor), plain


def collate_det(batch: list[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """Lists of images (of their own sizes) and targets, as torchvision's detection models take them."""
    return [b[0] for b in batch], [b[1] for b in batch]
