"""``predict_seg``: masks and colour overlays for image files, through any model ``open_model`` opens."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from mcq.data import SegTransform
from mcq.data.ade20k import read_image
from mcq.io import atomic_path
from mcq.runtime.artifacts import open_model
from mcq.tasks.classmaps import colourize, labels_at


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
