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

import ast
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.dtypes
import torch

from mcq.errors import McqError
from mcq.io import atomic_path, load_state
from mcq.models.encoders import Encoder, normalization

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
    palette, the config with the input's normalisation, where the file has them)."""

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

    @property
    def data_preprocessor(self) -> dict | None:
        """How the model's input was normalised (``mean``, ``std`` in 0..255 units, ``bgr_to_rgb``), as the file's
        config says: mm 3.x's ``model.data_preprocessor``, else mm 1.x's ``img_norm_cfg``, else what mcq's export
        wrote (``meta.mcq``); ``None`` where it says nothing. The config's text is parsed, never run."""
        text = self.meta.get("cfg") or self.meta.get("config")
        top = _assignments(text) if isinstance(text, str) else {}
        pre = _kwargs(_kwargs(top.get("model")).get("data_preprocessor"))
        old = _kwargs(top.get("img_norm_cfg"))
        if "mean" in pre:  # mmengine's BaseDataPreprocessor: bgr_to_rgb=False unless set
            found = (pre["mean"], pre.get("std"), pre.get("bgr_to_rgb", ast.Constant(False)))
        elif "mean" in old:  # mmcv 1.x's Normalize: to_rgb=True unless set
            found = (old["mean"], old.get("std"), old.get("to_rgb", ast.Constant(True)))
        else:
            return (self.meta.get("mcq") or {}).get("data_preprocessor")
        try:
            return dict(zip(("mean", "std", "bgr_to_rgb"), map(ast.literal_eval, found)))
        except (ValueError, TypeError):
            raise McqError(f"{self.path}: meta's config gives no literal mean / std / bgr_to_rgb for its "
                           "data_preprocessor") from None

    def input_norm(self, encoder: str) -> dict | None:
        """``data_preprocessor`` as a model config's ``input_norm`` (``Renormalize``): ``None`` where it is
        ``encoder``'s own normalisation or the file gives none."""
        pre = self.data_preprocessor
        if pre is None:
            return None
        norm = {"mean": [m / 255 for m in pre["mean"]], "std": [s / 255 for s in pre["std"]],
                "bgr": not pre["bgr_to_rgb"]}
        own = normalization(encoder)
        same = np.allclose(norm["mean"], own[0], atol=1e-6) and np.allclose(norm["std"], own[1], atol=1e-6)
        return None if same and not norm["bgr"] else norm


def data_preprocessor(encoder: Encoder, input_norm: dict | None) -> dict:
    """An mm config's ``data_preprocessor`` normalisation for a model on ``encoder`` (``input_norm`` where it was
    trained on another than the encoder's)."""
    norm = input_norm or {"mean": encoder.mean, "std": encoder.std}
    return {"mean": [round(255 * m, 6) for m in norm["mean"]], "std": [round(255 * s, 6) for s in norm["std"]],
            "bgr_to_rgb": not norm.get("bgr", False)}


def _assignments(text: str) -> dict[str, ast.expr]:
    """The top-level ``name = value`` of a config's Python text (mmengine's ``Config.pretty_text``)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return {}
    return {t.id: node.value for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
            if isinstance(t, ast.Name)}


def _kwargs(node: ast.expr | None) -> dict[str, ast.expr]:
    """The items of a ``dict(k=v)`` or ``{"k": v}`` expression ({} for anything else)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return {kw.arg: kw.value for kw in node.keywords if kw.arg}
    if isinstance(node, ast.Dict):
        return {k.value: v for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)}
    return {}


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
