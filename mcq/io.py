"""Atomic writes and safe checkpoint reads."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from mcq.errors import McqError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it is renamed onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document at ``path``; a one-line McqError naming the file where it does not parse."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise McqError(f"{path}: not valid JSON ({e})") from e


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


@contextmanager
def staged_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` only if the block succeeds.

    A failed run therefore leaves nothing that looks like a finished one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint without executing code: safetensors, or torch files with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise McqError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        with open(path, "rb") as f:
            head = f.read(4)
        if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):  # torch's zip format, or a pickle
            raise McqError(f"{path}: cannot read checkpoint: not a torch (.pt/.ckpt) or safetensors file")
        return torch.load(path, map_location="cpu", weights_only=True)
    except McqError:
        raise
    except Exception as e:  # noqa: BLE001 - every failure here is the file's fault
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            first = "it holds Python objects that would run code on load (only plain tensors are accepted)"
        raise McqError(f"{path}: cannot read checkpoint: {first}") from e


@dataclass
class StateDiff:
    """How a checkpoint's tensors line up with a model's ``state_dict``."""

    matched: list[str]
    missing: list[str]
    mismatched: list[str]  # "key: checkpoint (shape) vs model (shape)"
    unexpected: list[str]


def diff_state(own: Mapping[str, torch.Tensor], theirs: Mapping[str, Any]) -> StateDiff:
    """Compare names and shapes; BatchNorm's ``num_batches_tracked`` counters are not weights and are ignored."""
    keep = lambda k: not k.endswith("num_batches_tracked")  # noqa: E731
    diff = StateDiff([], [], [], sorted(k for k in theirs if k not in own and keep(k)))
    for k, v in own.items():
        if not keep(k):
            continue
        if k not in theirs:
            diff.missing.append(k)
        elif getattr(theirs[k], "shape", None) != v.shape:
            diff.mismatched.append(f"{k}: checkpoint {tuple(getattr(theirs[k], 'shape', ()))} "
                                   f"vs model {tuple(v.shape)}")
        else:
            diff.matched.append(k)
    return diff
