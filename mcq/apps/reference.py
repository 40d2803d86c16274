"""A reference vector for an app's own pre- and post-processing, made with mcq's (the one ``mcq predict`` uses).

An app re-implements, from an artifact's metadata, the steps around the model: pixels -> normalised tensor,
logits -> class mask, and depth -> colours (``DEPTH_RAMP``). ``reference_vector`` gives inputs and the answers mcq
computes for them, so the app (or its test) can check it agrees.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from mcq.tasks.classmaps import is_labels
from mcq.errors import McqError
from mcq.io import atomic_path


def preprocess(image: Image.Image, meta: dict) -> np.ndarray:
    """An RGB image as a segmentation artifact takes it, from ``meta``'s ``input``: stretched to the input size
    (bilinear, antialiased), scaled to [0, 1], normalised with mean/std, NCHW float32 with a batch of one."""
    inp = meta["input"]
    if not inp["resize"].startswith("stretch"):
        raise McqError(f"input resize '{inp['resize']}': only stretched (segmentation) inputs are supported here")
    h, w = inp["shape"][-2:]
    tf = v2.Compose([v2.Resize((h, w)), v2.ToDtype(torch.float32, scale=True), v2.Normalize(inp["mean"], inp["std"])])
    return tf(v2.functional.pil_to_tensor(image.convert("RGB")))[None].numpy()


def postprocess(output: np.ndarray) -> np.ndarray:
    """Class index per pixel of a seg output: of logits [1, K, H, W] the argmax over K (the first of equal maxima),
    of labels [1, H, W] (``mcq export --outputs labels``) the labels themselves."""
    return (output[0] if is_labels(output) else output[0].argmax(0)).astype(np.uint8)


# The apps' depth colour map, near -> far: matplotlib's turbo at 9 even steps, reversed (near is red), interpolated
# linearly between them. The web, iOS and Android apps hold the same table.
DEPTH_RAMP = ((122, 4, 3), (208, 47, 5), (251, 126, 33), (238, 207, 58), (164, 252, 60), (50, 242, 152),
              (40, 188, 235), (70, 107, 227), (48, 18, 59))


def colour_depth(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """RGB (uint8, ``depth``'s shape + 3) of ``depth`` on ``DEPTH_RAMP``, ``lo`` (near) to ``hi`` (far) metres;
    each channel rounded half up. ``hi <= lo`` colours everything as near."""
    t = np.clip((depth - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(depth)
    x = t * (len(DEPTH_RAMP) - 1)
    i = np.minimum(np.floor(x).astype(int), len(DEPTH_RAMP) - 2)
    ramp = np.array(DEPTH_RAMP, np.float64)
    rgb = ramp[i] + (ramp[i + 1] - ramp[i]) * (x - i)[..., None]
    return np.floor(rgb + 0.5).astype(np.uint8)


def reference_vector(meta: dict, seed: int = 0, image_size: tuple[int, int] = (97, 41),
                     logits_size: tuple[int, int] = (6, 9), classes: int = 5) -> dict:
    """Random pixels of ``image_size`` (width, height; shrunk along one side, grown along the other) with the tensor
    ``preprocess`` makes of them; random logits of ``logits_size`` (height, width; with ties; ``meta``'s classes, or
    ``classes`` for a model without any) with their mask; random depths of that size with their colours on
    ``DEPTH_RAMP`` from their own min to max. ``coreml_input`` is copied from ``meta`` where it is there."""
    rng = np.random.default_rng(seed)
    width, height = image_size
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    tensor = preprocess(Image.fromarray(pixels, "RGB"), meta)
    k = len(meta.get("class_names", [])) or classes
    logits = rng.integers(-3, 4, (1, k, *logits_size)).astype(np.float32)  # small integers: ties happen
    depth = rng.uniform(0.5, 10.0, (1, 1, *logits_size)).astype(np.float32)
    lo, hi = float(depth.min()), float(depth.max())
    return {
        "seed": seed,
        "input": meta["input"],
        **({"coreml_input": meta["coreml_input"]} if "coreml_input" in meta else {}),
        "image": {"width": width, "height": height, "channels": 3, "rgb": pixels.ravel().tolist()},
        "tensor": {"shape": list(tensor.shape), "data": tensor.ravel().tolist()},
        "logits": {"shape": list(logits.shape), "data": logits.ravel().tolist()},
        "mask": {"shape": list(logits_size), "data": postprocess(logits).ravel().tolist()},
        "depth": {"shape": list(depth.shape), "data": depth.ravel().tolist(), "min": lo, "max": hi,
                  "rgb": colour_depth(depth[0, 0], lo, hi).ravel().tolist()},
    }


def write_reference(meta: dict, path: str | Path, seed: int = 0) -> Path:
    """Write ``reference_vector(meta, seed)`` to ``path`` as JSON (one line per entry), atomically."""
    ref = reference_vector(meta, seed)
    with atomic_path(path) as tmp:
        tmp.write_text("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in ref.items()) + "\n}\n")
    return Path(path)
