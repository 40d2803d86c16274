"""``predict_seg``: masks and colour overlays for image files, through any model ``open_model`` opens."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mcq.data import SegTransform
from mcq.data.ade20k import read_image
from mcq.export.runtimes import open_model
from mcq.io import atomic_path


def colourize(mask: np.ndarray, palette: list[list[int]]) -> Image.Image:
    """A palette PNG image of a class-index mask (the indices stay readable as pixel values)."""
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette([c for rgb in palette for c in rgb])
    return im


def is_labels(output: np.ndarray) -> bool:
    """Whether a seg model's output holds class indices (``mcq export --outputs labels``), not logits."""
    return not np.issubdtype(output.dtype, np.floating)


def labels_at(output: np.ndarray, height: int, width: int) -> np.ndarray:
    """Post-processing to class indices at the image's size: logits ``[1, K, h, w]`` upsampled (bilinear), then
    argmax; labels ``[1, h, w]`` resized (nearest: the pixel whose centre is nearest)."""
    if is_labels(output):
        h, w = output.shape[-2:]
        rows, cols = (((np.arange(n) + 0.5) * m / n).astype(int) for n, m in ((height, h), (width, w)))
        return output[0][rows[:, None], cols]
    up = F.interpolate(torch.from_numpy(output).float(), size=(height, width), mode="bilinear", align_corners=False)
    return up.argmax(1)[0].numpy()


def predict_seg(images: list[str | Path], model: str | Path, out: str | Path, threads: int | None = None) -> list[dict]:
    """For each image write ``NAME_mask.png`` (class indices, palette) and ``NAME_overlay.png``; return timings."""
    opened = open_model(model, threads, task="seg")
    meta = opened.meta
    tf = SegTransform(meta["input"]["shape"][-1], False, meta["input"]["mean"], meta["input"]["std"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in map(Path, images):
        image = read_image(path)
        x = tf.image_only(image)[None].numpy()
        start = time.perf_counter()
        output = opened.run(x)
        model_ms = 1000 * (time.perf_counter() - start)
        labels = labels_at(output, image.height, image.width)
        mask = colourize(labels, meta["palette"])
        overlay = Image.blend(image, mask.convert("RGB"), 0.5)
        for suffix, im in (("mask", mask), ("overlay", overlay)):
            with atomic_path(out / f"{path.stem}_{suffix}.png") as tmp:
                im.save(tmp, format="PNG")
        present = sorted({meta["class_names"][i] for i in np.unique(labels)})
        rows.append({"image": str(path), "model_ms": model_ms, "runtime": opened.runtime, "classes": present,
                     "mask": str(out / f"{path.stem}_mask.png"), "overlay": str(out / f"{path.stem}_overlay.png")})
    return rows
