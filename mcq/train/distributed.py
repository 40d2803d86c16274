"""Which process this is, for what only one of a DDP run's processes does (printing, writing files)."""

from __future__ import annotations

import os


def is_rank_zero() -> bool:
    """Whether this is the first process of the run (torchrun's ``RANK``, SLURM's ``SLURM_PROCID``, or Lightning's
    spawned ranks' ``LOCAL_RANK`` and ``NODE_RANK``)."""
    for var in ("RANK", "SLURM_PROCID"):
        if var in os.environ:
            return int(os.environ[var]) == 0
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0
