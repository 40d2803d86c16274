"""Image-text shards in the DataCompDR layout, read with ``webdataset``.

Each sample of a ``.tar`` shard: an image (``jpg``, ``jpeg``, ``png`` or ``webp``), ``txt`` (the ground-truth web
caption), ``syn.json`` (``{"syn_text": [synthetic captions]}``), ``json`` (``uid``, ``sha256``) and optionally
``npz`` (teacher embeddings ``image_emb`` [augmentations, d] and ``text_emb`` [1 + synthetic captions, d]: row 0
the ground-truth caption's, row 1 + i synthetic caption i's) and ``paug.json`` (the augmentation each ``image_emb``
row was computed on, see ``mcq.data.paug``; replayed with ``--distill``). Shards are streamed, shuffled with a buffer
and split across ranks and data-loader workers.

The training stream is deterministic given the run's seed: each (rank, worker) stream's passes over its shards are
shuffled from (seed, rank, worker, pass), and each sample's random choices (caption, augmentation, crop) are drawn
from (seed, rank, worker, pass, its position in the pass). Each batch carries its stream (``"worker"``), the pass and
how many raw samples of that pass the stream has consumed (``"pass"``, ``"consumed"``); a resumed run's streams start
at that pass and skip those samples (``TrainSamples.skip``), reading the tar files only, and so continue exactly
where the interrupted run stopped.

An undecodable image is skipped and counted (each batch carries the count of skips since the one before, under
``"skipped"``); more than ``max_bad_share`` of a stream's samples bad stops the run with an error naming the shard.
"""

from __future__ import annotations

import glob
import io
import itertools
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

from mcq.data.paug import PaugReplay, parse_paug
from mcq.errors import McqError

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
CAPTION_KINDS = ("gt", "syn")
MAX_BAD_SHARE = 0.1  # stop when more than this share of the samples seen so far had an undecodable image
MIN_SEEN = 20  # ... once at least this many were seen
STREAM_KEYS = ("worker", "pass", "consumed")  # where a training batch stands in its stream (see TrainSamples)


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
    paug: list | None = None  # paug.json's param_aug: entry a is the augmentation of image_emb[a]
    name: str = ""


def _name(sample: dict) -> str:
    return f"{sample.get('__url__', '?')}: sample {sample.get('__key__', '?')}"


def parse_sample(sample: dict, captions: tuple[str, ...], teacher: bool, paug: bool = False) -> ImageText | None:
    """An ``ImageText`` from the raw bytes of one webdataset sample; ``None`` when its image does not decode.
    ``paug``: read ``paug.json`` too (``teacher`` runs that replay the stored augmentations). Raises ``McqError``
    for a sample the run asks more of than it has (no ``syn.json``, no ``npz``, ...)."""
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
    item = ImageText(image, gt or "", syn, name=_name(sample))
    if teacher:
        if "npz" not in sample:
            raise McqError(f"{_name(sample)} has no npz teacher embeddings; --distill needs them")
        with np.load(io.BytesIO(sample["npz"])) as z:
            if "image_emb" not in z or "text_emb" not in z:
                raise McqError(f"{_name(sample)}: npz lacks image_emb / text_emb")
            item.image_emb, item.text_emb = np.atleast_2d(z["image_emb"]), np.atleast_2d(z["text_emb"])
        if len(item.text_emb) < 1 + len(syn):
            raise McqError(f"{_name(sample)}: npz text_emb has {len(item.text_emb)} rows, need 1 + {len(syn)} captions")
        if paug:
            if "paug.json" not in sample:
                raise McqError(f"{_name(sample)} has no paug.json; --distill replays the augmentation each teacher "
                               "image embedding was computed on")
            item.paug = parse_paug(sample["paug.json"], len(item.image_emb), _name(sample))
    return item


def _keys(sample: dict) -> list[str]:
    return [k for k in sample if not k.startswith("__")]


class SampleDecoder:
    """A webdataset stage: raw samples -> model inputs (a dict of tensors), skipping and counting bad images.
    ``replay`` (training with a teacher): the image is the replay of the stored augmentation whose teacher
    embedding is used, not ``transform``'s."""

    def __init__(self, transform: Callable, tokenizer: Callable, captions: tuple[str, ...], teacher: bool,
                 train: bool, max_bad_share: float = MAX_BAD_SHARE, replay: PaugReplay | None = None):
        self.transform, self.tokenizer, self.captions, self.teacher = transform, tokenizer, captions, teacher
        self.train, self.max_bad_share, self.replay = train, max_bad_share, replay

    def __call__(self, samples: Iterable[dict]) -> Iterator[dict]:
        seen = bad = pending = 0
        for sample in samples:
            seen += 1
            item = parse_sample(sample, self.captions, self.teacher, self.replay is not None)
            if item is None:
                bad += 1
                pending += 1
                if seen >= MIN_SEEN and bad > self.max_bad_share * seen:
                    raise McqError(f"{sample.get('__url__', '?')}: {bad} of {seen} images could not be decoded, "
                                   f"more than {self.max_bad_share:.0%}; check the shards")
                continue
            seed = sample.get("__seed__", 0)
            with torch.random.fork_rng(devices=[]):  # the crop's draws, from the sample's own seed
                torch.manual_seed(seed)
                out = self.encode(item, random.Random(seed))
            yield {**out, "skipped": pending, **{k: sample[f"__{k}__"] for k in STREAM_KEYS if f"__{k}__" in sample}}
            pending = 0

    def encode(self, item: ImageText, rng: random.Random) -> dict:
        """Model inputs for ``item``; training draws one synthetic caption (and, with a teacher, one stored
        augmentation) from ``rng``, validation takes the first."""
        j = rng.randrange(len(item.syn)) if self.train and item.syn else 0
        a = rng.randrange(len(item.image_emb)) if self.train and self.teacher else 0
        if self.replay is not None:
            out = {"image": self.replay(item.image, item.paug[a], item.name)}
        else:
            out = {"image": self.transform(item.image)}
        if "gt" in self.captions:
            out["gt"] = self.tokenizer([item.gt])[0]
        if "syn" in self.captions:
            out["syn"] = self.tokenizer([item.syn[j]])[0]
        if self.teacher:
            out["teacher_image"] = torch.from_numpy(item.image_emb[a]).float()
            out["teacher_gt"] = torch.from_numpy(item.text_emb[0]).float()
            out["teacher_syn"] = torch.from_numpy(item.text_emb[1 + j]).float()
        return out


def collate_clip(samples: list[dict]) -> dict:
    """Stack a list of decoded samples into a batch; ``skipped`` is summed, the stream position is the last
    sample's."""
    batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if k not in ("skipped", *STREAM_KEYS)}
    batch["skipped"] = sum(s["skipped"] for s in samples)
    batch.update({k: samples[-1][k] for k in STREAM_KEYS if k in samples[-1]})
    return batch


def _seed(*key: int) -> int:
    """A seed from a tuple of integers (numpy's ``SeedSequence``: the same in every process)."""
    return int(np.random.SeedSequence(key).generate_state(1)[0])


class TrainSamples:
    """The first stage of a training pipeline: this (rank, worker)'s raw samples, endlessly. Pass ``p`` reads its
    shards (``shards[rank::world][worker::workers]``, as ``wds.split_by_node`` / ``wds.split_by_worker`` split
    them) in an order shuffled from (seed, rank, worker, p), through a shuffle buffer seeded likewise. Each sample
    is tagged ``__worker__``, ``__pass__``, ``__consumed__`` (its 1-based position in the pass) and ``__seed__``
    (for its random choices).

    ``skip`` (``"rank/worker"`` -> ``[pass, consumed]``, from a checkpoint): the stream starts at that pass, whose
    first ``consumed`` samples are read but not passed on (so a resume reads at most one pass). ``batches`` (how
    many batches this rank had taken when the checkpoint was written): the DataLoader takes batches from its workers
    in turn, starting with worker 0, so loader worker ``i`` plays stream ``(i + batches) % workers``, the one whose
    batch came next."""

    def __init__(self, shards: list[str], seed: int = 0, shuffle_buffer: int = 0):
        self.shards, self.seed, self.shuffle_buffer = shards, seed, shuffle_buffer
        self.skip: dict[str, list[int]] = {}  # "rank/worker" -> [pass, consumed]
        self.batches = 0

    def __call__(self) -> Iterator[dict]:
        rank, world, loader_worker, workers = wds.utils.pytorch_worker_info()
        worker = (loader_worker + self.batches) % workers
        mine = self.shards[rank::world][worker::workers]
        first, skip = self.skip.get(f"{rank}/{worker}", (0, 0))
        for p in itertools.count(first):
            rng = random.Random(_seed(self.seed, rank, worker, p, 0))
            urls = [{"url": u} for u in rng.sample(mine, len(mine))]
            samples = wds.tarfile_to_samples(handler=_shard_error)(urls)
            if self.shuffle_buffer > 1:
                samples = wds.shuffle(self.shuffle_buffer, initial=min(self.shuffle_buffer, 100), rng=rng)(samples)
            consumed = 0
            for sample in samples:
                consumed += 1
                if p > first or consumed > skip:
                    yield {**sample, "__worker__": worker, "__pass__": p, "__consumed__": consumed,
                           "__seed__": _seed(self.seed, rank, worker, p, consumed)}
            if consumed == 0:
                raise McqError(f"{', '.join(mine)}: no samples in the training shards of rank {rank}, worker {worker}")


def clip_pipeline(shards: list[str] | TrainSamples, decoder: SampleDecoder, batch_size: int,
                  limit: int | None = None) -> wds.DataPipeline:
    """Batches of ``batch_size``. Training (``shards`` a ``TrainSamples``): endless, incomplete batches dropped.
    Evaluation (a list of shards): one pass, every rank reads every shard (so each computes recall over the whole
    set), split across workers, the last batch kept."""
    train = isinstance(shards, TrainSamples)
    stages: list = [shards] if train else [wds.SimpleShardList(shards), wds.split_by_worker,
                                           wds.tarfile_to_samples(handler=_shard_error)]
    if limit:
        stages += [wds.slice(limit)]
    stages += [decoder, wds.batched(batch_size, collation_fn=collate_clip, partial=not train)]
    return wds.DataPipeline(*stages)


def _shard_error(exn: Exception) -> bool:
    """webdataset's handler for a shard that breaks while being read: stop with one line naming it."""
    raise McqError(f"cannot read shard: {exn}") from exn
