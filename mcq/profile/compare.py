"""``compare``: two profiles (two devices, two versions) cell by cell, and a regression gate on the differences.

``--fail-on latency+10%,miou-0.5`` fails when B's median latency is more than 10% above A's, or B's mIoU is more
than 0.5 points below A's, in any cell both profiles measured; a cell that ran in A but not in B fails too.
A margin is relative with ``%`` (of A's figure), else absolute in the metric's unit (ms, MB, mIoU points).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mcq.errors import McqError
from mcq.profile.accuracy import read_json
from mcq.profile.report import runtime_label

METRICS = {  # name in --fail-on -> (how to read it from a cell, unit)
    "latency": (lambda c: c.get("median_ms"), "ms"),
    "p90": (lambda c: c.get("p90_ms"), "ms"),
    "load": (lambda c: c.get("load_ms"), "ms"),
    "memory": (lambda c: c.get("peak_mem_mb"), "MB"),
    "size": (lambda c: c.get("size_mb"), "MB"),
    "miou": (lambda c: (c.get("accuracy") or {}).get("value") if (c.get("accuracy") or {}).get("metric") == "mIoU"
             else None, "points"),
}


@dataclass(frozen=True)
class Gate:
    """One ``--fail-on`` term: ``metric`` may not move in ``direction`` (+1 up, -1 down) by more than ``margin``."""

    metric: str
    direction: int
    margin: float
    relative: bool

    def __str__(self) -> str:
        unit = "%" if self.relative else METRICS[self.metric][1]
        return f"{self.metric}{'+' if self.direction > 0 else '-'}{self.margin:g}{'' if self.relative else ' '}{unit}"

    def breached(self, a: float, b: float) -> bool:
        allowed = abs(a) * self.margin / 100 if self.relative else self.margin
        return self.direction * (b - a) > allowed + 1e-12


def parse_fail_on(text: str) -> list[Gate]:
    """``"latency+10%,miou-0.5"`` -> gates; a one-line error for a term it cannot read."""
    gates = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        m = re.fullmatch(r"([a-zA-Z0-9]+)([+-])(\d+(?:\.\d+)?)(%?)", term)
        if not m or m.group(1).lower() not in METRICS:
            raise McqError(f"--fail-on {term!r}: expected METRIC+N[%] or METRIC-N[%] with METRIC one of "
                           f"{', '.join(METRICS)} (e.g. latency+10%,miou-0.5)")
        gates.append(Gate(m.group(1).lower(), 1 if m.group(2) == "+" else -1, float(m.group(3)), bool(m.group(4))))
    return gates


def load_profile(path: str | Path) -> dict:
    """A ``profile.json`` (or a folder holding one), or a one-line error naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "profile.json"
    data = read_json(path, "profile")
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list) or "device" not in data or not all(
            isinstance(c, dict) and {"model", "img_size", "runtime", "precision", "status"} <= set(c)
            for c in data["cells"]):
        raise McqError(f"{path}: not an mcq profile (needs 'device' and 'cells' with model, img_size, runtime, "
                       "precision, status)")
    return data


def _key(cell: dict) -> tuple:
    return cell["model"], cell["img_size"], runtime_label(cell), cell["precision"]


def compare_profiles(a: dict, b: dict, gates: list[Gate]) -> tuple[list[dict], list[str]]:
    """Rows of the cells in either profile (A's figures, B's, the change) and the gate's failures."""
    cells_a, cells_b = {_key(c): c for c in a["cells"]}, {_key(c): c for c in b["cells"]}
    rows, failures = [], []
    for key in [*cells_a, *(k for k in cells_b if k not in cells_a)]:
        ca, cb = cells_a.get(key), cells_b.get(key)
        row = {"key": key, "a": ca, "b": cb, "fails": []}
        name = " ".join(map(str, key))
        if ca and ca["status"] == "ran" and (not cb or cb["status"] != "ran"):
            row["fails"].append(f"ran in A, {'absent' if not cb else cb['status']} in B")
        elif ca and cb:
            for gate in gates:
                read = METRICS[gate.metric][0]
                va, vb = read(ca), read(cb)
                if va is not None and vb is not None and gate.breached(va, vb):
                    row["fails"].append(f"{gate.metric} {va:.2f} -> {vb:.2f} (beyond {gate})")
        if gates:
            failures += [f"{name}: {f}" for f in row["fails"]]
        rows.append(row)
    return rows, failures


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _change(va: float | None, vb: float | None, relative: bool) -> str:
    if va is None or vb is None:
        return "-"
    return f"{100 * (vb - va) / va:+.1f}%" if relative and va else f"{vb - va:+.2f}"


def format_comparison(a: dict, b: dict, rows: list[dict], gates: list[Gate], names: tuple[str, str]) -> str:
    """The comparison table: latency and mIoU of A and B and their change, each cell's verdict."""
    from mcq.profile.device import device_line

    lines = [f"A: {names[0]}: {device_line(a['device'])}", f"B: {names[1]}: {device_line(b['device'])}",
             f"{'model':<18} {'px':>4} {'runtime':<14} {'prec':<4} {'A ms':>8} {'B ms':>8} {'change':>8} "
             f"{'A mIoU':>6} {'B mIoU':>6} {'change':>6}  verdict"]
    lat, acc = METRICS["latency"][0], METRICS["miou"][0]
    for r in rows:
        ca, cb = r["a"] or {}, r["b"] or {}
        model, size, runtime, precision = r["key"]
        verdict = "; ".join(r["fails"]) if r["fails"] and gates else (
            "ok" if ca.get("status") == cb.get("status") == "ran" else
            f"A {ca.get('status', 'absent')}, B {cb.get('status', 'absent')}")
        lines.append(f"{model:<18} {size:>4} {runtime:<14} {precision:<4} {_fmt(lat(ca)):>8} {_fmt(lat(cb)):>8} "
                     f"{_change(lat(ca), lat(cb), True):>8} {_fmt(acc(ca)):>6} {_fmt(acc(cb)):>6} "
                     f"{_change(acc(ca), acc(cb), False):>6}  {verdict}")
    if gates:
        lines.append(f"gate {', '.join(map(str, gates))}: " + (
            "FAILED" if any(r["fails"] for r in rows) else "passed"))
    return "\n".join(lines)


def compare(path_a: str | Path, path_b: str | Path, fail_on: str = "") -> tuple[str, list[str]]:
    """The printed comparison of profiles A and B and the failures of the ``fail_on`` gate (empty: passed)."""
    a, b = load_profile(path_a), load_profile(path_b)
    gates = parse_fail_on(fail_on)
    rows, failures = compare_profiles(a, b, gates)
    return format_comparison(a, b, rows, gates, (str(path_a), str(path_b))), failures
