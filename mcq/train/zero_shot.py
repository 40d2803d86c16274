"""Zero-shot classification with a CLIP checkpoint (``mcq eval clip --zero-shot FOLDER``): open_clip's classifier,
one text embedding per class averaged over prompt templates, scored top-1 / top-5 on a folder of class folders."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import open_clip
import torch
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy
from tqdm import tqdm

from mcq.data.imagefolder import ImageFolder
from mcq.tasks.checkpoint import read_checkpoint
from mcq.tasks.specs import clip_normalization
from mcq.errors import McqError
from mcq.io import write_json
from mcq.models.clip_model import tokenizer_for

TEMPLATES = {"openai": OPENAI_IMAGENET_TEMPLATES, "simple": SIMPLE_IMAGENET_TEMPLATES}


def prompt_templates(spec: str) -> Sequence:
    """open_clip's ImageNet templates by name ("openai": CLIP's 80, "simple": its 18), or one template of your own
    with ``{}`` where the class name goes (``"a photo of a {}."``)."""
    if spec in TEMPLATES:
        return TEMPLATES[spec]
    if "{}" not in spec:
        raise McqError(f"--templates {spec!r}: give {' or '.join(TEMPLATES)}, or a template with {{}} for the class "
                       "name")
    return (spec,)


def class_names(folders: list[str], names_file: str | Path | None = None) -> list[str]:
    """The classes' names: one per line of ``names_file``, in the sorted order of the folders, or the folder names
    with underscores read as spaces."""
    if names_file is None:
        return [f.replace("_", " ") for f in folders]
    if not Path(names_file).is_file():
        raise McqError(f"{names_file}: missing; --class-names takes a text file of class names, one per class folder "
                       "in their sorted order")
    names = [line.strip() for line in Path(names_file).read_text().splitlines() if line.strip()]
    if len(names) != len(folders):
        raise McqError(f"{names_file}: {len(names)} class names for {len(folders)} class folders; one line per folder, "
                       "in their sorted order")
    return names


def zero_shot(checkpoint: str | Path, folder: str | Path, templates: str = "openai",
              names_file: str | Path | None = None, img_size: int | None = None, batch_size: int = 32, workers: int = 2,
              json_out: str | Path | None = None) -> dict:
    """Top-1 / top-5 accuracy (and chance) of the CLIP model in ``checkpoint`` classifying the images of ``folder``
    (``<class>/*.jpg``) from the text of their class names alone."""
    trained = read_checkpoint(checkpoint, "clip")
    m, o = trained.hparams["model"], trained.recipe
    size = img_size or m["img_size"]
    ds = ImageFolder(folder, None, open_clip.image_transform(size, False, *clip_normalization(m["cfg"])))
    names, n = class_names(ds.classes, names_file), ds.num_classes
    model = trained.model
    top1 = MulticlassAccuracy(n, top_k=1, average="micro")
    top5 = MulticlassAccuracy(n, top_k=min(5, n), average="micro")
    with torch.no_grad():
        classifier = build_zero_shot_classifier(model, tokenizer_for(m["name"], o["context_length"]), names,
                                                prompt_templates(templates), use_tqdm=False)
        for images, labels in tqdm(DataLoader(ds, batch_size, num_workers=workers), desc="zero-shot", unit="batch",
                                   leave=False):
            logits = model.encode_image(images, normalize=True) @ classifier
            top1.update(logits, labels)
            top5.update(logits, labels)
    metrics = {"checkpoint": str(checkpoint), "data": str(folder), "img_size": size, "templates": templates,
               "classes": n, "images": len(ds), "top1": float(top1.compute()), "top5": float(top5.compute()),
               "chance_top1": 1 / n, "chance_top5": min(5, n) / n}
    if json_out:
        write_json(json_out, metrics)
    return metrics


def format_zero_shot_table(metrics: dict) -> str:
    """Top-1 / top-5 in percent beside chance."""
    return "\n".join([f"{'top1':>7} {'top5':>7}  chance top1/top5  images  classes  templates",
                      f"{100 * metrics['top1']:7.2f} {100 * metrics['top5']:7.2f}  "
                      f"{100 * metrics['chance_top1']:6.2f} / {100 * metrics['chance_top5']:6.2f}  "
                      f"{metrics['images']:>6}  {metrics['classes']:>7}  {metrics['templates']}"])
