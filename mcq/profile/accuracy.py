"""Accuracy beside latency: measured (``mcq eval TASK --json`` files) or published (``baselines.json`` beside this
module, package data).

An eval of an artifact (it names its ``runtime`` and ``precision``) gives the accuracy of that exact cell; an
eval of a checkpoint gives the PyTorch fp32 figure, used for the other cells of the same model and size that
have no eval of their own; a cell with both (on the same data) carries the ``checkpoint``'s figure and the ``drop``
(checkpoint minus cell, in the metric's units). Cells with neither get the paper's figure for the architecture,
labelled ``published``: it is the accuracy of the paper's trained model, not of the weights measured here.
"""

from __future__ import annotations

import json
from pathlib import Path

from mcq.errors import McqError
from mcq.tasks.specs import TASKS

BASELINES = Path(__file__).with_name("baselines.json")


def read_json(path: str | Path, what: str) -> dict | list:
    """A JSON file, or a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise McqError(f"{path}: no such {what} file")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise McqError(f"{path}: not a {what} (JSON does not parse: {str(e).splitlines()[0]})") from None


def load_baselines(path: str | Path | None = None) -> list[dict]:
    """The published entries (``encoder``, ``head``, ``value``, ``img_size``, ``source``, ...), each with the file's
    ``metric``."""
    path = Path(path or BASELINES)
    data = read_json(path, "baselines")
    entries = data.get("entries") if isinstance(data, dict) else None
    metrics = [s.headline[1] for s in TASKS.values() if s.headline]
    if (not isinstance(entries, list) or data.get("metric") not in metrics
            or not all(isinstance(e, dict) and {"encoder", "head", "value", "source"} <= set(e) for e in entries)):
        raise McqError(f"{path}: not a baselines file (needs 'metric', one of {', '.join(metrics)}, and 'entries': "
                       "[{encoder, head, value, source}, ...])")
    return [{**e, "metric": data["metric"]} for e in entries]


LOWER_IS_BETTER = {"RMSE m"}


def _headline(m: dict) -> tuple[str, str, float] | None:
    """(task, metric, value as reported) of an eval result, or None when it has no headline figure."""
    for task, (keys, metric, scale) in ((s.name, s.headline) for s in TASKS.values() if s.headline):
        value = m
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        if isinstance(value, float):
            return task, metric, scale * value
    return None


def load_eval(path: str | Path) -> dict:
    """An ``mcq eval TASK --json`` result: who was evaluated (task, encoder, head, size, runtime, precision) and its
    headline figure (mIoU, box AP and top-1 in %, as in the paper; depth RMSE in metres)."""
    m = read_json(path, "mcq eval result")
    found = _headline(m) if isinstance(m, dict) and {"encoder", "img_size"} <= set(m) else None
    if found is None:
        raise McqError(f"{path}: not an `mcq eval --json` result (needs encoder, img_size and one of mIoU, "
                       "bbox.AP, top1, rmse)")
    task, metric, value = found
    return {"task": task, "metric": metric, "encoder": m["encoder"], "head": m.get("head", ""),
            "img_size": m["img_size"], "runtime": m.get("runtime", "torch"), "precision": m.get("precision", "fp32"),
            "data": m.get("data"), "value": value, "file": str(path)}


def attach_accuracy(cells: list[dict], measured: list[dict], published: list[dict]) -> None:
    """Set each cell's ``accuracy`` (``{"metric", "value", "source", "note"}``) from ``load_eval`` results and
    ``load_baselines`` entries (ADE20K mIoU), or leave it out where none is known."""
    for cell in cells:
        task = cell["task"]
        same = [e for e in measured if (e["task"], e["encoder"], e["img_size"]) == (task, cell["encoder"],
                                                                                    cell["img_size"])
                and e["head"] in ("", cell["head"])]
        exact = [e for e in same if (e["runtime"], e["precision"]) == (cell["runtime"], cell["precision"])]
        torch_fp32 = [e for e in same if (e["runtime"], e["precision"]) == ("torch", "fp32")]
        paper = [b for b in published if b["metric"] == TASKS[task].headline[1]
                 and (b["encoder"], b["head"]) == (cell["encoder"], cell["head"])]
        if exact:
            acc = {"metric": exact[-1]["metric"], "value": exact[-1]["value"], "source": "measured",
                   "note": exact[-1]["file"]}
            ref = [e for e in torch_fp32 if e is not exact[-1] and e["data"] == exact[-1]["data"]]
            if ref:  # an artifact's eval beside its checkpoint's, on the same data
                acc.update(checkpoint=ref[-1]["value"], drop=ref[-1]["value"] - acc["value"])
        elif torch_fp32:
            acc = {"metric": torch_fp32[-1]["metric"], "value": torch_fp32[-1]["value"],
                   "source": "measured (torch fp32)", "note": torch_fp32[-1]["file"]}
        elif paper:
            size = f" at {paper[0]['img_size']} px" if paper[0].get("img_size") else ""
            acc = {"metric": paper[0]["metric"], "value": paper[0]["value"], "source": "published",
                   "note": f"{paper[0]['source']}{size}, {paper[0].get('init', '')} init"}
        else:
            continue
        cell["accuracy"] = acc
