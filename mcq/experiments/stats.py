"""Arms compared over seeds: the mean of the per-seed differences between two arms (the seeds pair them: each seed
repeats the whole chain for every arm), its 95% confidence interval (Student's t with n - 1 degrees of freedom), and
whether that interval excludes zero."""

from __future__ import annotations

import math
import statistics

from scipy.stats import t as student_t

LEVEL = 0.95


def paired_gap(a: list[float], b: list[float], level: float = LEVEL) -> dict:
    """``a - b`` seed by seed: ``mean``, the interval ``low``..``high`` (``None`` under two seeds), ``n`` and
    ``separated`` (the interval excludes zero)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_gap needs as many values on each side, at least one: {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    mean, n = statistics.fmean(diffs), len(diffs)
    if n < 2:
        return {"mean": mean, "low": None, "high": None, "n": n, "separated": False}
    half = float(student_t.ppf((1 + level) / 2, n - 1)) * statistics.stdev(diffs) / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n, "separated": bool(half < abs(mean))}


def verdict(winner: str, loser: str, gaps: dict[str, dict]) -> str:
    """One line: on which scores ``winner`` beats ``loser`` beyond the seeds' spread, on which the reverse holds, and
    on which the two are not separated."""
    ahead = [s for s, g in gaps.items() if g["separated"] and g["mean"] > 0]
    behind = [s for s, g in gaps.items() if g["separated"] and g["mean"] < 0]
    neither = [s for s in gaps if s not in ahead and s not in behind]
    parts = []
    if ahead:
        parts.append(f"{winner} beats {loser} on {', '.join(ahead)}")
    if behind:
        parts.append(f"{loser} beats {winner} on {', '.join(behind)}")
    if neither:
        parts.append(f"not separated on {', '.join(neither)}")
    return f"{winner} vs {loser} (95% intervals over {_seeds(gaps)} seeds): " + "; ".join(parts)


def _seeds(gaps: dict[str, dict]) -> int:
    return min(g["n"] for g in gaps.values())
