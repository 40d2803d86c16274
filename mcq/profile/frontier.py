"""The accuracy-latency trade-off of a profile: the cells it plots and those on its Pareto front."""

from __future__ import annotations


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (latency, accuracy) no other point beats: none is as fast and as accurate and better
    in one; sorted by latency."""
    front = []
    for i, (lat, acc) in enumerate(points):
        if not any(l2 <= lat and a2 >= acc and (l2, a2) != (lat, acc) for l2, a2 in points):
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def plotted(cells: list[dict]) -> list[dict]:
    """The cells with a latency and an ADE20K mIoU (the paper's trade-off): the points of the plot and of the front;
    the other tasks' accuracy is in the table."""
    return [c for c in cells if c["status"] == "ran" and (c.get("accuracy") or {}).get("metric") == "mIoU"]


def front_cells(cells: list[dict]) -> list[dict]:
    """The plotted cells on the Pareto front; a cell whose parity check failed is not a candidate."""
    points = [c for c in plotted(cells) if not c.get("parity_failed")]
    return [points[i] for i in pareto_front([(c["median_ms"], c["accuracy"]["value"]) for c in points])]
