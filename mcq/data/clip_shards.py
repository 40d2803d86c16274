"""Image-text shards in the DataCompDR layout, read with ``webdataset``.

Each sample of a ``.tar`` shard: an image (``jpg``, ``jpeg``, ``png`` or ``webp``), ``txt`` (the ground-truth web
caption), ``syn.json`` (``{"syn_text": [synthetic captions]}``), ``json`` (``uid``, ``sha256``) and optionally
``npz`` (teacher embeddings ``image_emb`` [augmentations, d] and ``text_emb`` [1 + synthetic captions, d]: row 0
the ground-truth caption's, row 1 + i synthetic caption i's) and ``paug.json``. Shards are streamed, shuffled with
a buffer and split across ranks and data-loader workers (``wds.split_by_node``, ``wds.split_by_worker``).

An undecodable image is skipped and counted (each batch carries the count of skips since the one before, under
``"skipped"``); more than ``max_bad_share`` of a stream's samples bad stops the run with an error naming the shard.
"""

from __future__ import annotations

import glob
import io
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from mcq.errors import McqError

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
CAPTION_KINDS = ("gt", "syn")
MAX_BAD_SHARE = 0.1  # stop when more than this share of the samples seen so far had an undecodable image
MIN_SEEN = 20  # ... once at least this many were seen


def parse_captions(spec: str) -> tuple[str, ...]:
    """``"gt,syn"`` -> ``("gt", "syn")``: which captions the loss is applied to."""
    kinds = tuple(k.strip() for k in spec.split(",") if k.strip())
    if not kinds or any(k not in CAPTION_KINDS for k in kinds) or len(set(kinds)) != len(kinds):
        raise McqError(f"--captions {spec!r}: expected gt,syn (default), gt or syn")
    return kinds


def list_shards(spec: str) -> list[str]:
    """The ``.tar`` shards named by ``spec``: a folder (its ``*.tar``, sorted), a brace pattern
    (``data/{00000..00099}.tar``), a glob, or files separated by ``::``. Each must exist and be a tar file."""
    paths: list[str] = []
    for name in wds.shardlists.expand_urls(str(spec)):  # webdataset's own reading of "::" and braces
        if Path(name).is_dir():
            paths += sorted(str(p) for p in Path(name).glob("*.tar"))
        else:
            paths += sorted(glob.glob(name)) if glob.has_magic(name) else [name]
    if not paths:
        raise McqError(f"{spec}: no .tar shards (give a folder of shards, a brace pattern or a list joined by ::)")
    for p in paths:
        if not Path(p).is_file():
            raise McqError(f"{p}: no such shard")
        if not tarfile.is_tarfile(p):
            raise McqError(f"{p}: not a tar file; shards are webdataset .tar files")
    return paths


@dataclass
class ImageText:
    """One decoded sample."""

    image: Image.Image
    gt: str
    syn: list[str]
    image_emb: np.ndarray | None = None
    text_emb: np.ndarray | None = None


def _name(sample: dict) -> str:
    return f"{sample.get('__url__', '?')}: sample {sample.get('__key__', '?')}"


def parse_sample(sample: dict, captions: tuple[str, ...], teacher: bool) -> ImageText | None:
    """An ``ImageText`` from the raw bytes of one webdataset sample; ``None`` when its image does not decode.
    Raises ``McqError`` for a sample the run asks more of than it has (no ``syn.json``, no ``npz``, ...)."""
    key = next((k for k in IMAGE_KEYS if k in sample), None)
    if key is None:
        raise McqError(f"{_name(sample)} has no image ({', '.join(IMAGE_KEYS)}); keys: {', '.join(_keys(sample))}")
    try:
        image = Image.open(io.BytesIO(sample[key]))
        image = image.convert("RGB")
    except Exception:  # noqa: BLE001 - any decoding failure means: skip this image
        return None
    gt = sample["txt"].decode("utf-8").strip() if "txt" in sample else None
    if gt is None and "gt" in captions:
        raise McqError(f"{_name(sample)} has no txt caption; pass --captions syn to train on synthetic captions only")
    syn: list[str] = []
    if "syn" in captions or teacher:
        if "syn.json" not in sample:
            raise McqError(f"{_name(sample)} has no syn.json; pass --captions gt to train without synthetic captions")
        try:
            meta = json.loads(sample["syn.json"])
        except json.JSONDecodeError as e:
            raise McqError(f"{_name(sample)}: syn.json is not JSON ({e})") from e
        syn = meta.get("syn_text") if isinstance(meta, dict) else None
        if not isinstance(syn, list) or not syn or not all(isinstance(s, str) for s in syn):
            raise McqError(f"{_name(sample)}: syn.json has no syn_text list of captions")
    item = ImageText(image, gt or "", syn)
    if teacher:
        if "npz" not in sample:
            raise McqError(f"{_name(sample)} has no npz teacher embeddings; --distill needs them")
        with np.load(io.BytesIO(sample["npz"])) as z:
            if "image_emb" not in z or "text_emb" not in z:
                raise McqError(f"{_name(sample)}: npz lacks image_emb / text_emb")
            item.image_emb, item.text_emb = np.atleast_2d(z["image_emb"]), np.atleast_2d(z["text_emb"])
        if len(item.text_emb) < 1 + len(syn):
            raise McqError(f"{_name(sample)}: npz text_emb has {len(item.text_emb)} rows, need 1 + {len(syn)} captions")
    return item


def _keys(sample: dict) -> list[str]:
    return [k for k in sample if not k.startswith("__")]


class SampleDecoder:
    """A webdataset stage: raw samples -> model inputs (a dict of tensors), skipping and counting bad images."""

    def __init__(self, transform: Callable, tokenizer: Callable, captions: tuple[str, ...], teacher: bool,
                 train: bool, max_bad_share: float = MAX_BAD_SHARE):
        self.transform, self.tokenizer, self.captions, self.teacher = transform, tokenizer, captions, teacher
        self.train, self.max_bad_share = train, max_bad_share

    def __call__(self, samples: Iterable[dict]) -> Iterator[dict]:
        seen = bad = pending = 0
        for sample in samples:
            seen += 1
            item = parse_sample(sample, self.captions, self.teacher)
            if item is None:
                bad += 1
                pending += 1
                if seen >= MIN_SEEN and bad > self.max_bad_share * seen:
                    raise McqError(f"{sample.get('__url__', '?')}: {bad} of {seen} images could not be decoded, "
                                   f"more than {self.max_bad_share:.0%}; check the shards")
                continue
            yield {**self.encode(item), "skipped": pending}
            pending = 0

    def encode(self, item: ImageText) -> dict:
        # one synthetic caption per image and step (training); the first one for validation
        j = random.randrange(len(item.syn)) if self.train and item.syn else 0
        out = {"image": self.transform(item.image)}
        if "gt" in self.captions:
            out["gt"] = self.tokenizer([item.gt])[0]
        if "syn" in self.captions:
            out["syn"] = self.tokenizer([item.syn[j]])[0]
        if self.teacher:
            a = random.randrange(len(item.image_emb)) if self.train else 0
            out["teacher_image"] = torch.from_numpy(item.image_emb[a]).float()
            out["teacher_gt"] = torch.from_numpy(item.text_emb[0]).float()
            out["teacher_syn"] = torch.from_numpy(item.text_emb[1 + j]).float()
        return out


def collate_clip(samples: list[dict]) -> dict:
    """Stack a list of decoded samples into a batch; ``skipped`` is summed."""
    batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if k != "skipped"}
    batch["skipped"] = sum(s["skipped"] for s in samples)
    return batch


def clip_pipeline(shards: list[str], decoder: SampleDecoder, batch_size: int, train: bool,
                  shuffle_buffer: int = 0, limit: int | None = None) -> wds.DataPipeline:
    """Batches of ``batch_size`` from ``shards``. Training: endless (the shards repeat), shards split across ranks
    and workers, samples shuffled with a buffer, incomplete batches dropped. Evaluation: one pass, every rank reads
    every shard (so each computes recall over the whole set), split across workers, the last batch kept."""
    stages: list = [wds.SimpleShardList(shards)]
    if train:
        stages += [wds.split_by_node, wds.split_by_worker, wds.shuffle(len(shards))]
    else:
        stages += [wds.split_by_worker]
    stages += [wds.tarfile_to_samples(handler=_shard_error)]
    if train and shuffle_buffer > 1:
        stages += [wds.shuffle(shuffle_buffer, initial=min(shuffle_buffer, 100))]
    if limit:
        stages += [wds.slice(limit)]
    stages += [decoder, wds.batched(batch_size, collation_fn=collate_clip, partial=not train)]
    pipe = wds.DataPipeline(*stages)
    return pipe.repeat() if train else pipe


def _shard_error(exn: Exception) -> bool:
    """webdataset's handler for a shard that breaks while being read: stop with one line naming it."""
    raise McqError(f"cannot read shard: {exn}") from exn
