"""The paper's recipes as plain data: one JSON file per task + head (../shared/paper.md, Tables 11-15)."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from importlib import resources

from mcq.errors import McqError


@dataclass(frozen=True)
class SegRecipe:
    source: str
    task: str
    head: str
    img_size: int
    max_steps: int
    batch_size: int
    optimizer: str
    lr: float
    lr_sweep: list[float]
    betas: list[float]
    weight_decay: float
    warmup_steps: int
    schedule: str
    poly_power: float
    min_lr: float
    drop_path: float
    drop_path_sweep: list[float]
    crop_scale: list[float]
    crop_ratio: list[float]
    val_every: int


def load_recipe(task: str, head: str) -> SegRecipe:
    """The shipped recipe for ``task`` with ``head`` (e.g. ``load_recipe("seg", "fpn")``)."""
    path = resources.files("mcq.recipes").joinpath(f"{task}_{head}.json")
    if not path.is_file():
        raise McqError(f"no recipe for task {task!r} with head {head!r}")
    data = json.loads(path.read_text())
    names = {f.name for f in fields(SegRecipe)}
    return SegRecipe(**{k: v for k, v in data.items() if k in names})
