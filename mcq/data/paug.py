"""DataCompDR's stored image augmentations (``paug.json``), replayed so the student sees the image the teacher
embedding ``npz`` ``image_emb[a]`` was computed on.

The layout is ml-mobileclip's (``training/dr/transforms.py``, ``Compose.compress``): ``{"param_aug": [entry, ...]}``,
entry ``a`` belonging to ``image_emb[a]``; an entry lists the parameters of the augmentations that have any, in the
order of the dataset's augmentation config (``TRANSFORMATION_TO_NAME``). DataCompDR's config
(``training/configs/datacompdr{12m,1b}.json``) has two: ``random_resized_crop`` ``[top, left, height, width]`` in
pixels of the stored image, and ``rand_augment`` ``[[op index, signed magnitude], x2]`` (``RandAugment.op_names``),
applied after the crop is resized to the model's size, as ml-mobileclip's training does (its magnitudes as stored:
a translation is in pixels of the size the dataset was generated at, 224 for DataCompDR).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F
from torchvision.transforms.autoaugment import _apply_op

from mcq.errors import McqError

DATACOMPDR_OPS = ("random_resized_crop", "rand_augment")
RAND_AUGMENT_OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
                    "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
REPLAYABLE = ("random_resized_crop", "random_horizontal_flip", "rand_augment", "random_erase")  # ml-mobileclip's order


def parse_paug(raw: bytes, rows: int, name: str) -> list:
    """The ``param_aug`` list of a sample's ``paug.json`` (``name`` names the sample), one entry per ``image_emb``
    row at least (``rows``)."""
    try:
        meta = json.loads(raw)
        entries = meta.get("param_aug") if isinstance(meta, dict) else None
        if isinstance(entries, str):  # some exports keep the list as a JSON string
            entries = json.loads(entries)
    except json.JSONDecodeError as e:
        raise McqError(f"{name}: paug.json is not JSON ({e})") from e
    if not isinstance(entries, list):
        raise McqError(f"{name}: paug.json has no param_aug list")
    if len(entries) < rows:
        raise McqError(f"{name}: paug.json has {len(entries)} augmentations, npz image_emb has {rows}")
    return entries


class PaugReplay:
    """Stored augmentation parameters -> the model's input tensor: the ``ops`` (ml-mobileclip names, in the order
    the entries list them) replayed on a PIL image, the crop resized to ``size``, then normalised."""

    def __init__(self, size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 ops: tuple[str, ...] = DATACOMPDR_OPS):
        for op in ops:
            if op not in REPLAYABLE:
                raise McqError(f"paug op {op!r} cannot be replayed; mcq replays {', '.join(REPLAYABLE)}")
        if not ops or ops[0] != "random_resized_crop" or list(ops) != sorted(ops, key=REPLAYABLE.index):
            raise McqError(f"paug ops {', '.join(ops)}: expected random_resized_crop first, then in the order "
                           f"{', '.join(REPLAYABLE)}")
        self.size, self.mean, self.std, self.ops = size, list(mean), list(std), ops

    def __call__(self, image: Image.Image, entry: Any, name: str) -> torch.Tensor:
        if not isinstance(entry, list) or len(entry) != len(self.ops):
            raise McqError(f"{name}: paug entry {_short(entry)} does not list {len(self.ops)} parameters "
                           f"({', '.join(self.ops)})")
        x: Any = image
        for op, params in zip(self.ops, entry):
            if op == "random_erase":  # the one op on the tensor (ml-mobileclip: after to_tensor, before normalize)
                x = F.to_tensor(x)
            if params is not None:  # ml-mobileclip stores None for an augmentation skipped at random
                x = _OPS[op](x, params, self.size, f"{name}: paug {op} {_short(params)}")
        return F.normalize(x if isinstance(x, torch.Tensor) else F.to_tensor(x), self.mean, self.std)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _ints(params: Any, n: int, what: str) -> list[int]:
    if not isinstance(params, list) or len(params) != n or not all(isinstance(v, int) for v in params):
        raise McqError(f"{what}: expected {n} integers")
    return params


def _crop(image: Image.Image, params: Any, size: int, what: str) -> Image.Image:
    top, left, height, width = _ints(params, 4, what)
    if height <= 0 or width <= 0:
        raise McqError(f"{what}: an empty crop")
    return F.resized_crop(image, top, left, height, width, [size, size], InterpolationMode.BICUBIC, antialias=True)


def _flip(image: Image.Image, params: Any, size: int, what: str) -> Image.Image:
    if not isinstance(params, bool):
        raise McqError(f"{what}: expected true or false")
    return F.hflip(image) if params else image


def _rand_augment(image: Image.Image, params: Any, size: int, what: str) -> Image.Image:
    if not isinstance(params, list):
        raise McqError(f"{what}: expected a list of [op, magnitude]")
    for op in params:
        if not (isinstance(op, list) and len(op) == 2 and isinstance(op[0], int) and isinstance(op[1], (int, float))):
            raise McqError(f"{what}: expected a list of [op, magnitude]")
        if not 0 <= op[0] < len(RAND_AUGMENT_OPS):
            raise McqError(f"{what}: unknown RandAugment op {op[0]} (known: 0-{len(RAND_AUGMENT_OPS) - 1})")
        image = _apply_op(image, RAND_AUGMENT_OPS[op[0]], float(op[1]), InterpolationMode.NEAREST, None)
    return image


def _erase(image: torch.Tensor, params: Any, size: int, what: str) -> torch.Tensor:
    top, left, height, width = _ints(params, 4, what)
    return image if top == -1 else F.erase(image, top, left, height, width, torch.tensor(0.0))


_OPS: dict[str, Callable] = {"random_resized_crop": _crop, "random_horizontal_flip": _flip,
                             "rand_augment": _rand_augment, "random_erase": _erase}
