"""Accuracy beside latency: measured (``mcq eval seg --json`` files) or published (``profiles/baselines.json``).

An eval of an artifact (it names its ``runtime`` and ``precision``) gives the accuracy of that exact cell; an
eval of a checkpoint gives the PyTorch fp32 figure, used for the other cells of the same model and size that
have no eval of their own. Cells with neither get the paper's figure for the architecture, labelled
``published``: it is the accuracy of the paper's trained model, not of the weights measured here.
"""

from __future__ import annotations

import json
from pathlib import Path

from mcq.errors import McqError

BASELINES = Path(__file__).resolve().parents[2] / "profiles" / "baselines.json"


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
    """The published entries (``encoder``, ``head``, ``value``, ``img_size``, ``source``, ...)."""
    path = Path(path or BASELINES)
    data = read_json(path, "baselines")
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and {"encoder", "head", "value", "source"} <= set(e)
                                                for e in entries):
        raise McqError(f"{path}: not a baselines file (needs 'entries': [{{encoder, head, value, source}}, ...])")
    return entries


def load_eval(path: str | Path) -> dict:
    """An ``mcq eval seg --json`` result: who was evaluated (encoder, head, size, runtime, precision) and mIoU
    (a fraction there, in % here as in the paper)."""
    m = read_json(path, "mcq eval result")
    if not isinstance(m, dict) or not {"encoder", "img_size", "mIoU"} <= set(m) or not isinstance(m["mIoU"], float):
        raise McqError(f"{path}: not an `mcq eval seg --json` result (needs encoder, img_size and a number mIoU)")
    return {"encoder": m["encoder"], "head": m.get("head", ""), "img_size": m["img_size"],
            "runtime": m.get("runtime", "torch"), "precision": m.get("precision", "fp32"),
            "value": 100 * m["mIoU"], "file": str(path)}


def attach_accuracy(cells: list[dict], measured: list[dict], published: list[dict]) -> None:
    """Set each cell's ``accuracy`` (``{"metric", "value", "source", "note"}``) from ``load_eval`` results and
    ``load_baselines`` entries, or leave it out where none is known."""
    for cell in cells:
        same = [e for e in measured if (e["encoder"], e["img_size"]) == (cell["encoder"], cell["img_size"])
                and e["head"] in ("", cell["head"])]
        exact = [e for e in same if (e["runtime"], e["precision"]) == (cell["runtime"], cell["precision"])]
        torch_fp32 = [e for e in same if (e["runtime"], e["precision"]) == ("torch", "fp32")]
        paper = [b for b in published if (b["encoder"], b["head"]) == (cell["encoder"], cell["head"])]
        if exact:
            acc = {"value": exact[-1]["value"], "source": "measured", "note": exact[-1]["file"]}
        elif torch_fp32:
            acc = {"value": torch_fp32[-1]["value"], "source": "measured (torch fp32)", "note": torch_fp32[-1]["file"]}
        elif paper:
            size = f" at {paper[0]['img_size']} px" if paper[0].get("img_size") else ""
            acc = {"value": paper[0]["value"], "source": "published",
                   "note": f"{paper[0]['source']}{size}, {paper[0].get('init', '')} init"}
        else:
            continue
        cell["accuracy"] = {"metric": "mIoU", **acc}
