"""A reference vector for an app's own pre- and post-processing, made with mcq's (the one ``mcq predict`` uses).

An app re-implements, from an artifact's metadata, the steps around the model: pixels -> normalised tensor, and
logits -> class mask. ``reference_vector`` gives inputs and the answers mcq computes for them, so the app (or its
test) can check it agrees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from mcq.errors import McqError
from mcq.io import write_json


def preprocess(image: Image.Image, meta: dict) -> np.ndarray:
    """An RGB image as a segmentation artifact takes it, from ``meta``'s ``input``: stretched to the input size
    (bilinear, antialiased), scaled to [0, 1], normalised with mean/std, NCHW float32 with a batch of one."""
    inp = meta["input"]
    if not inp["resize"].startswith("stretch"):
        raise McqError(f"input resize '{inp['resize']}': only stretched (segmentation) inputs are supported here")
    h, w = inp["shape"][-2:]
    tf = v2.Compose([v2.Resize((h, w)), v2.ToDtype(torch.float32, scale=True), v2.Normalize(inp["mean"], inp["std"])])
    return tf(v2.functional.pil_to_tensor(image.convert("RGB")))[None].numpy()


def postprocess(logits: np.ndarray) -> np.ndarray:
    """Class index per pixel of seg logits [1, K, H, W] (argmax over K; the first of equal maxima)."""
    return logits[0].argmax(0).astype(np.uint8)


def reference_vector(meta: dict, seed: int = 0, image_size: tuple[int, int] = (97, 41),
                     logits_size: tuple[int, int] = (6, 9)) -> dict:
    """Random pixels of ``image_size`` (width, height; shrunk along one side, grown along the other) with the tensor
    ``preprocess`` makes of them, and random logits of ``logits_size`` (height, width; with ties) with their mask."""
    rng = np.random.default_rng(seed)
    width, height = image_size
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    tensor = preprocess(Image.fromarray(pixels, "RGB"), meta)
    k = len(meta["class_names"])
    logits = rng.integers(-3, 4, (1, k, *logits_size)).astype(np.float32)  # small integers: ties happen
    return {
        "input": meta["input"],
        "image": {"width": width, "height": height, "channels": 3, "rgb": pixels.ravel().tolist()},
        "tensor": {"shape": list(tensor.shape), "data": tensor.ravel().tolist()},
        "logits": {"shape": list(logits.shape), "data": logits.ravel().tolist()},
        "mask": {"shape": list(logits_size), "data": postprocess(logits).ravel().tolist()},
    }


def write_reference(meta: dict, path: str | Path, seed: int = 0) -> Path:
    """Write ``reference_vector(meta, seed)`` to ``path`` as JSON, atomically."""
    write_json(path, reference_vector(meta, seed))
    return Path(path)
