"""Every task's embedded synthetic dataset (``mcq data synth``): its writer, the official layout it writes and
what its counts mean, and ``synthesize``, which writes one and says what it wrote."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable, NamedTuple

from mcq.data.synth import synth_cls, synth_depth, synth_det, synth_seg
from mcq.data.synth_clip import synth_clip
from mcq.errors import McqError


class Synth(NamedTuple):
    write: Callable[..., Path]  # write(out, seed, n_train, n_val, size, ...) -> the folder written
    layout: str  # the official on-disk layout it writes
    held_out: str = "validation"  # what its held-out split is called
    counted: str = "images"  # what n_train and n_val count


SYNTH: dict[str, Synth] = {
    "seg": Synth(synth_seg, "ADE20K"),
    "depth": Synth(synth_depth, "NYUv2 (BTS)", held_out="test"),
    "cls": Synth(synth_cls, "ImageNet folder", counted="images per class"),
    "det": Synth(synth_det, "COCO"),
    "clip": Synth(synth_clip, "DataCompDR shards (train/, val/) + seg/ (ADE20K) + zeroshot/ (class folders)"),
}


def synthesize(task: str, out: str | Path, seed: int = 0, **settings: float | None) -> str:
    """Write ``task``'s synthetic dataset to ``out`` with ``settings`` (``n_train``, ``n_val``, ``size``, and what
    else its writer takes, e.g. clip's ``noise``; None: the writer's default); what was written, in one line."""
    synth = SYNTH[task]
    params = inspect.signature(synth.write).parameters
    for name, value in settings.items():
        if value is not None and name not in params:
            raise McqError(f"--{name} is not a setting of {task}'s synthetic data (its writer takes "
                           f"{', '.join(p for p in params if p not in ('out', 'seed'))})")
    n = {k: params[k].default if v is None else v for k, v in settings.items() if k in params}
    written = synth.write(out, seed=seed, **n)
    return (f"wrote {n['n_train']} training + {n['n_val']} {synth.held_out} {synth.counted} to {written} "
            f"({synth.layout} layout)")
