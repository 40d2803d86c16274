"""What mmseg and mmdet imports share: placing a file's weights on an mcq model, the load report, and the mcq
checkpoint they write."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mcq.errors import McqError
from mcq.interop.backbones import infer_encoder
from mcq.io import diff_state
from mcq.models.clip_init import pruned_keys
from mcq.models.encoders import Encoder
from mcq.tasks.checkpoint import write_checkpoint


@dataclass
class ImportReport:
    """What an import placed: the layout and model it read, and the keys it matched, left at their initialisation
    (``missing``) or found no place for (``unused``: weights of modules the encoder prunes)."""

    source: str
    layout: str
    model: str
    classes: int
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    input_norm: dict | None = None  # the normalisation the model was trained on, where not its encoder's

    def summary(self) -> str:
        left = ", ".join(sorted({k.split(".")[0] for k in self.missing})) or "none"
        norm = self.input_norm
        trained = ("the encoder's" if norm is None else
                   f"mean {_rounded(norm['mean'])} std {_rounded(norm['std'])}{' BGR' if norm['bgr'] else ''}, "
                   "renormalised in the model from the encoder's")
        return (f"import {self.source} ({self.layout} backbone): {self.model}, {self.classes} classes; "
                f"{len(self.matched)} weights matched, {len(self.missing)} left at init ({left}), "
                f"{len(self.unused)} unused (modules the encoder prunes); input normalisation: {trained}")


def _rounded(values: list[float]) -> list[float]:
    return [round(v, 4) for v in values]


def split_backbone(state: dict[str, torch.Tensor], path: Path,
                   backbone: str | None) -> tuple[dict[str, torch.Tensor], str]:
    """The file's ``backbone.*`` weights (without the prefix) and the encoder they are: ``backbone`` if given, else
    the one their shapes fit."""
    weights = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    try:
        return weights, backbone or infer_encoder(weights)
    except McqError as e:
        raise McqError(f"{path}: {e}") from None


def place(model: torch.nn.Module, state: dict[str, torch.Tensor], encoder: Encoder, encoder_prefix: str,
          path: Path, what: str, flags: str = "--backbone",
          optional: tuple[str, ...] = ()) -> tuple[list[str], list[str], list[str]]:
    """Load ``state`` (the file's weights under the model's keys) into ``model``; return the matched, missing and
    unused keys. Refused, with nothing loaded, if a weight of the model (outside ``optional``) or of the file has no
    counterpart, unless the file's extra weights belong to encoder modules the encoder prunes."""
    d = diff_state(model.state_dict(), state)
    trunk = encoder_prefix + "trunk."
    trunk_unused = [k.removeprefix(trunk) for k in d.unexpected if k.startswith(trunk)]
    pruned = [trunk + k for k in pruned_keys(trunk_unused, encoder.trunk)]
    unplaced = (d.mismatched + [k for k in d.missing if not k.startswith(optional)]
                + [k for k in d.unexpected if k not in pruned])
    if unplaced:
        raise McqError(f"{path}: {len(unplaced)} weights do not fit {what}, e.g. {unplaced[0]}; check {flags}")
    model.load_state_dict({k: state[k] for k in d.matched}, strict=False)
    return d.matched, d.missing, pruned


def save_imported(model: nn.Module, hparams: dict, out: str | Path, source: Path, layout: str) -> None:
    """Write ``model`` as an mcq checkpoint (what ``mcq eval``, ``mcq export`` and ``mcq profile`` take), atomically."""
    write_checkpoint(out, model, hparams, mcq_import={"source": str(source), "layout": layout})
