"""A training order that a resumed run continues exactly, for the map-style datasets (seg, depth, cls, det).

An uninterrupted run and one killed and resumed from a checkpoint (``--resume``) take the same batches and draw the
same random numbers: every epoch's order is a permutation of ``(seed, epoch)`` (``ResumableSampler``); each sample's
augmentation draws from a seed of ``(seed, epoch, position)`` (``Seeded``), wherever the loader's workers stand; the
model's own randomness (stochastic depth, Mask R-CNN's RoI sampling) draws from a seed of ``(seed, step, rank)``
set before each step; and a run resumed mid-epoch skips the batches its checkpoint had taken (``ExactResume``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


def seed_of(*parts: int) -> int:
    """A 63-bit seed that is a function of ``parts`` alone (not of Python's per-process hash salt)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def reseed(seed: int) -> None:
    """Seed every generator an augmentation or a model may draw from: torch's (all devices), numpy's, Python's."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class Seeded(Dataset):
    """``dataset`` indexed by ``(index, seed)``: each sample is read and augmented after ``reseed(seed)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> object:
        index, seed = key
        reseed(seed)
        return self.dataset[index]


class ResumableSampler(DistributedSampler):
    """This process's share of each epoch, in whole global batches of ``batch_size`` per process, as ``(index,
    seed)`` for ``Seeded``. A ``DistributedSampler`` so that Lightning keeps it under DDP instead of wrapping it; the
    process group is read when iterating (Lightning starts it after the loaders are made). ``skip(n)`` leaves out the
    first ``n`` batches of the next epoch iterated."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int) -> None:  # no super().__init__: needs the group
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.epoch, self._skip = 0, 0

    def _group(self) -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def steps(self) -> int:
        """Batches per epoch (the global batch's remainder of the dataset is dropped, as ``drop_last`` does)."""
        return len(self.dataset) // (self.batch_size * self._group()[0])

    def __len__(self) -> int:
        return self.steps() * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip(self, batches: int) -> None:
        self._skip = batches

    def __iter__(self) -> Iterator[tuple[int, int]]:
        world, rank = self._group()
        shuffled = torch.Generator().manual_seed(seed_of(self.seed, self.epoch))
        order = torch.randperm(len(self.dataset), generator=shuffled)
        start, self._skip = self._skip, 0
        for step in range(start, self.steps()):
            first = (step * world + rank) * self.batch_size
            for pos in range(first, first + self.batch_size):
                yield int(order[pos]), seed_of(self.seed, self.epoch, pos)


class ExactResume(L.Callback):
    """Seeds each step's randomness from ``(seed, step, rank)``, and on ``--resume`` makes ``sampler`` skip the
    batches of the current epoch that the checkpoint's run had taken."""

    def __init__(self, sampler: ResumableSampler, seed: int) -> None:
        self.sampler, self.seed = sampler, seed

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        reseed(seed_of(self.seed, trainer.global_step, trainer.global_rank))

    def on_load_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict) -> None:
        self.sampler.skip(checkpoint["global_step"] % self.sampler.steps())
