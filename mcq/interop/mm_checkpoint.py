"""Reading and writing mmengine checkpoints (mmsegmentation / mmdetection ``.pth``) without mmengine or mmcv.

``Runner.save_checkpoint`` writes ``meta`` (``dataset_meta``: classes, palette), ``state_dict``, ``message_hub``
(``HistoryBuffer`` objects holding numpy arrays), ``optimizer`` and ``param_schedulers``. Since torch 2.6 such a
file no longer loads with ``torch.load``'s default ``weights_only=True`` (mmengine issue 1655). Here it does: inside
``torch.serialization.safe_globals`` that name an inert stand-in for ``HistoryBuffer`` and numpy's array, scalar and
dtype globals (under numpy 2's ``numpy._core`` and numpy 1's ``numpy.core`` names). ``HistoryBuffer`` keeps its
statistics methods on the instance, pickled as ``getattr(HistoryBuffer, "mean")``; that one ``getattr`` resolves to a
function that answers only for the stand-in. Any other global is refused before anything runs.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.dtypes
import torch

from mcq.errors import McqError
from mcq.io import atomic_path, load_state

HISTORY_BUFFER = "mmengine.logging.history_buffer.HistoryBuffer"


class HistoryBufferStandIn:
    """Takes the place of mmengine's ``HistoryBuffer`` while unpickling: it holds the pickled state and runs
    nothing (no ``__setstate__``, no methods)."""


def _stand_in_getattr(obj: Any, name: str) -> str:
    """``getattr`` as a ``HistoryBuffer`` pickle uses it (``HistoryBuffer.mean``): the method's name, nothing run."""
    if obj is not HistoryBufferStandIn:
        raise pickle.UnpicklingError(f"getattr({obj!r}, {name!r}): of getattr, only HistoryBuffer's methods are read")
    return f"{HISTORY_BUFFER}.{name}"


def _numpy_globals() -> list:
    core = np._core.multiarray
    pairs = [(core._reconstruct, "multiarray._reconstruct"), (core.scalar, "multiarray.scalar")]
    named = [(obj, f"numpy.{pkg}.{name}") for obj, name in pairs for pkg in ("_core", "core")]
    dtypes = [c for c in vars(numpy.dtypes).values() if isinstance(c, type) and c.__name__.endswith("DType")]
    return [np.ndarray, np.dtype, *dtypes, *named]


def mm_safe_globals() -> list:
    """What an mmengine checkpoint may name besides tensors: the stand-in, its ``getattr`` and numpy's globals."""
    return [(HistoryBufferStandIn, HISTORY_BUFFER), (_stand_in_getattr, "builtins.getattr"), *_numpy_globals()]


@dataclass
class MMCheckpoint:
    """The parts of an mmengine checkpoint mcq uses: the weights and ``meta`` (``dataset_meta`` with classes and
    palette, where the file has them)."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    meta: dict

    @property
    def classes(self) -> list[str] | None:
        classes = (self.meta.get("dataset_meta") or {}).get("classes")
        return [str(c) for c in classes] if classes else None

    @property
    def palette(self) -> list[list[int]] | None:
        palette = (self.meta.get("dataset_meta") or {}).get("palette")
        return [[int(c) for c in rgb] for rgb in palette] if palette else None


def read_mm_checkpoint(path: str | Path) -> MMCheckpoint:
    """The weights and meta of an mmengine (or mmcv 1.x) checkpoint, loaded with ``weights_only=True``; a
    one-line ``McqError`` naming the file where it is truncated, names another global, or holds no weights."""
    with torch.serialization.safe_globals(mm_safe_globals()):
        raw = load_state(path)
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise McqError(f"{path}: not an mmengine checkpoint: no state_dict of tensors")
    meta = raw.get("meta") if isinstance(raw.get("meta"), dict) else {}
    return MMCheckpoint(Path(path), {k.removeprefix("module."): v for k, v in state.items()}, meta)


def write_mm_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``meta`` + ``state_dict`` as mmseg's and mmdet's ``publish_model.py`` leave them, atomically."""
    with atomic_path(path) as tmp:
        torch.save({"meta": meta, "state_dict": {k: v.detach().clone() for k, v in state_dict.items()}}, tmp)
