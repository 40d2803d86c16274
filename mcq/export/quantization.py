"""int8 that keeps its accuracy: the format's calibrators tried in order of cost, then the fewest modules kept float.

A format's int8 export hands ``search`` two functions: ``quantize(method, float_modules)`` makes an int8 artifact
calibrated with ``method`` whose ops inside ``float_modules`` (module names of the task model, each with everything
under it) stay float; ``check(artifact)`` is its parity check on the validation images (never the calibration
images), the exporter's ``Check`` of the artifact's runner. ``search`` keeps the first calibrator whose full-int8
artifact passes. When none does, it keeps modules float, chosen by measurement on the task's own measure (pixel or
top-1 agreement, depth error): each candidate unit is left float alone and the one that helps most is kept float,
until the artifact passes; a unit that passes is then narrowed to the one of its children that still passes. The
candidate units are the model split, largest first by parameters, into ``UNITS`` parts (``units``). Where making an
artifact costs much more than running a stand-in for it (ExecuTorch: lowering), ``confirmed_search`` searches on
the stand-ins and makes only the artifact it keeps.

Why units and not single ops: a tensor stays int8 while any op next to it is quantized, so leaving one conv float
rarely helps. On an MCi0 SemanticFPN (5 classes, trained at 128 px, exported at 512 px) leaving each of the stem's
six modules float alone gave 98.78-98.86% agreement against 98.83% for full int8; the whole stem float gave 99.29%.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mcq.errors import McqError
from mcq.models.pt2e import keeps_float

class Int8Refused(McqError):
    """No int8 artifact passed its check; carries the closest one's parity, what was tried (``Search.facts``) and
    the format's facts of the closest artifact (``extra``, e.g. ExecuTorch's ``delegation``)."""

    def __init__(self, found: "Search", extra: dict | None = None):
        super().__init__(found.refusal())
        self.parity, self.facts, self.extra = found.best.parity, found.facts(), extra or {}


UNITS = 12  # candidate units the model is split into for the fallback search
MAX_TRIALS = 40  # fallback artifacts made and checked at most, before giving up
QAT_CALIBRATION = "qat"  # the int8 of a quantization-aware checkpoint with the ranges it learnt (``mcq.models.pt2e``)

Run = Callable[[np.ndarray], np.ndarray]
Check = Callable[[Run], dict]  # the exporter's parity check of a runnable int8 model
Quantize = Callable[[str, tuple[str, ...]], Any]  # (method, float_modules) -> an artifact: a file, or a stand-in
Judge = Callable[[Any], dict]  # an artifact's parity: its runner's ``Check``


class Unmade(McqError):
    """A candidate the format could not make (``quantize`` raises it): in a search a failed trial, not a failed
    export."""


def score(parity: dict) -> float:
    """The task's own measure, higher is better: agreement (seg, cls) or minus the mean relative error (depth); a
    candidate that could not be made scores below any."""
    if "agreement" in parity:
        return parity["agreement"]
    return -parity["mean_rel"] if "mean_rel" in parity else -math.inf


def measure(parity: dict) -> str:
    if "agreement" in parity:
        return f"{100 * parity['agreement']:.2f}%"
    return f"rel {parity['mean_rel']:.1e}" if "mean_rel" in parity else "not made"


def _parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _children(model: nn.Module, name: str) -> list[str]:
    """The children of module ``name`` that hold parameters, as full names."""
    module = model.get_submodule(name)
    return [f"{name}.{c}" if name else c for c, m in module.named_children() if _parameters(m)]


def units(model: nn.Module, n: int = UNITS) -> list[str]:
    """``model`` split into about ``n`` modules: the one with the most parameters is replaced by its children until
    there are ``n`` or none can be split. Small modules that run at high resolution (a stem) stay whole."""
    parts = _children(model, "")
    while len(parts) < n:
        splittable = [p for p in parts if _children(model, p)]
        if not splittable:
            break
        big = max(splittable, key=lambda p: _parameters(model.get_submodule(p)))
        i = parts.index(big)
        parts[i:i + 1] = _children(model, big)
    return parts


@dataclass
class Trial:
    """One int8 artifact made and checked; ``artifact`` is a file (deleted when the search drops the trial) or a
    stand-in model (let go), None once dropped."""

    method: str
    float_modules: tuple[str, ...]
    artifact: Any
    parity: dict
    confirming: bool = False  # the artifact made from a stand-in that passed (``confirmed_search``)

    def row(self) -> dict:
        return {"method": self.method, "float": list(self.float_modules), "measure": measure(self.parity),
                "passed": self.parity["passed"]} | ({"confirming": True} if self.confirming else {})


@dataclass
class Search:
    """What ``search`` tried, and the artifact it kept (``best``; passed or the closest to passing)."""

    calibrations: list[Trial] = field(default_factory=list)
    fallback: list[Trial] = field(default_factory=list)
    best: Trial | None = None
    stand_in: str | None = None  # what the trials ran on, where not on the artifacts (``confirmed_search``)

    def facts(self) -> dict:
        """For the report and the sidecar: the calibrators tried, the modules kept float and the fallback trials
        (measured on ``stand_in``, where named)."""
        out = {"calibration": self.best.method, "float_modules": list(self.best.float_modules),
               "calibrations_tried": [t.row() for t in self.calibrations]}
        if self.fallback:
            out["fallback_trials"] = [t.row() for t in self.fallback]
        if self.stand_in:
            out["trials_ran_on"] = self.stand_in
        return out

    def refusal(self) -> str:
        """The one-line reason no int8 artifact is kept."""
        tried = ", ".join(f"{t.method} {measure(t.parity)}" for t in self.calibrations)
        msg = f"no int8 kept its accuracy: calibrations tried: {tried}"
        if self.fallback:
            msg += (f"; with up to {max(len(t.float_modules) for t in self.fallback)} module(s) kept float the best "
                    f"was {measure(self.best.parity)} ({len(self.fallback)} tried)")
        return msg + f" (best: {self.best.parity['why']}); export fp32" + ("" if self.fallback else
                                                                              ", or let modules stay float")


def search(quantize: Quantize, check: Judge, methods: list[str], model: nn.Module, fallback: bool) -> Search:
    """The calibrators ``methods`` in order, then (``fallback``) modules kept float, until an artifact passes.
    Artifacts of trials other than the best full-int8 one and ``best`` are dropped as the search goes."""
    found = Search()
    for method in methods:
        trial = _trial(quantize, check, method, ())
        found.calibrations.append(trial)
        if trial.parity["passed"]:
            found.best = trial
            break
    else:
        found.best = max(found.calibrations, key=lambda t: score(t.parity))
        if fallback:
            _fall_back(quantize, check, model, found)
    _prune(found)
    return found


def full_int8(found: Search) -> Trial:
    """The full-int8 trial of the calibrator the search kept."""
    return next(t for t in found.calibrations if t.method == found.best.method)


def confirmed_search(stand_in: tuple[Quantize, Judge], make: Callable[[Any], Any], check: Judge, methods: list[str],
                     model: nn.Module, fallback: bool, name: str) -> Search:
    """``search`` on stand-ins for the artifacts (``stand_in``: their quantize and check; ``name`` says what they
    are), then the artifact of the trial it keeps made from that trial's stand-in (``make``) and checked
    (``check``): that artifact is ``best``. Where the format cannot make it (``Unmade``) or it fails although its
    stand-in passed, the trials it was narrowed from that passed (each keeps float what it keeps, and more) are made
    instead, narrowest first; those given up are listed as ``confirming`` trials. Where none passes, ``search``
    again, every trial's stand-in made into an artifact."""
    quantize = stand_in[0]
    found = search(*stand_in, methods, model, fallback)
    chosen = found.best
    wider = [t for t in reversed(found.fallback) if t.parity["passed"] and t is not chosen
             and all(keeps_float(m, t.float_modules) for m in chosen.float_modules)]
    for trial in (chosen, *wider):  # a kept trial that failed its stand-in returns at once, made or not
        stand = trial.artifact if trial.artifact is not None else quantize(trial.method, trial.float_modules)
        made = _trial(lambda *_: make(stand), check, trial.method, trial.float_modules)
        if made.parity["passed"] or not chosen.parity["passed"]:
            found.best, found.stand_in = made, name
            return found
        _discard(made)
        made.confirming = True
        found.fallback.append(made)
    return search(lambda method, floats: make(quantize(method, floats)), check, methods, model, fallback)


def _discard(trial: Trial) -> None:
    if isinstance(trial.artifact, Path):
        trial.artifact.unlink(missing_ok=True)
    trial.artifact = None


def _prune(found: Search) -> None:
    keep = (found.best, full_int8(found))
    for t in found.calibrations + found.fallback:
        if all(t is not k for k in keep):
            _discard(t)


def _trial(quantize: Quantize, check: Judge, method: str, float_modules: tuple[str, ...]) -> Trial:
    try:
        artifact = quantize(method, float_modules)
    except Unmade as e:
        return Trial(method, float_modules, None, {"passed": False, "why": f"not made: {e}"})
    return Trial(method, float_modules, artifact, check(artifact))


def _trials(quantize: Quantize, check: Judge, method: str, floats: list[tuple[str, ...]], desc: str) -> list[Trial]:
    """One trial per set of modules kept float, with a progress bar (each is a whole export and check)."""
    return [_trial(quantize, check, method, f) for f in tqdm(floats, desc=desc, unit="trial", leave=False)]


def _fall_back(quantize: Quantize, check: Judge, model: nn.Module, found: Search) -> None:
    """Greedy: each remaining unit left float alone (on top of those already float); keep the one that helps most;
    once an artifact passes, narrow its last unit to the child that still passes."""
    method, kept, candidates = found.best.method, (), units(model, UNITS)
    while candidates and len(found.fallback) + len(candidates) <= MAX_TRIALS:
        trials = _trials(quantize, check, method, [(*kept, c) for c in candidates], f"int8: {len(kept) + 1} float")
        found.fallback += trials
        best = max(trials, key=lambda t: score(t.parity))
        if score(best.parity) <= score(found.best.parity):
            break  # nothing left float alone helps any more
        found.best, kept = best, best.float_modules
        _prune(found)
        candidates.remove(kept[-1])
        if best.parity["passed"]:
            break
    while found.best.parity["passed"] and (children := _children(model, kept[-1])):
        if len(found.fallback) + len(children) > MAX_TRIALS:
            break
        trials = _trials(quantize, check, method, [(*kept[:-1], c) for c in children], f"int8: narrowing {kept[-1]}")
        found.fallback += trials
        passing = [t for t in trials if t.parity["passed"]]
        if not passing:
            break
        found.best = max(passing, key=lambda t: score(t.parity))
        kept = found.best.float_modules
        _prune(found)


def methods_for(calibration: str, known: tuple[str, ...], fmt: str) -> list[str]:
    """The calibrators to try: all of ``known`` in order for ``auto``, else the one named."""
    if calibration == "auto":
        return list(known)
    if calibration not in known:
        raise McqError(f"{fmt} int8 calibration {calibration!r} not supported ({', '.join(('auto', *known))})")
    return [calibration]


def speed_cost(runs: dict[str, Callable[[np.ndarray], np.ndarray]], example: torch.Tensor, rounds: int = 5) -> dict:
    """Median ms of one call of each of ``runs`` (same runtime, same settings), interleaved round by round so that
    they share the machine's load alike; one warm-up call each."""
    x = example[:1].numpy()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(rounds + 1):
        for name, run in runs.items():
            start = time.perf_counter()
            run(x)
            if i:
                times[name].append(1000 * (time.perf_counter() - start))
    return {name: round(statistics.median(t), 1) for name, t in times.items()}


def qat_facts() -> dict:
    """What an int8 artifact with a quantization-aware checkpoint's ranges says of its quantization: nothing
    calibrated, nothing kept float."""
    return {"calibration": QAT_CALIBRATION, "float_modules": []}


def format_int8(name: str, facts: dict) -> str:
    """One line for the terminal: the calibrator kept and those tried, the modules kept float and their cost."""
    if facts["calibration"] == QAT_CALIBRATION:
        return f"{name}: int8 with the weights and ranges of quantization-aware training"
    tried = ", ".join(f"{t['method']} {t['measure']}" for t in facts.get("calibrations_tried", []))
    line = f"{name}: int8 calibrated with {facts['calibration']}" + (f" (tried {tried})" if tried else "")
    if facts["float_modules"]:
        ms = facts.get("latency_ms", {})
        line += (f"; kept float after {len(facts.get('fallback_trials', []))} trials: "
                 + ", ".join(facts["float_modules"])
                 + (f"; {ms['this']:.0f} ms against {ms['int8']:.0f} full int8, {ms['fp32']:.0f} fp32" if ms else ""))
    return line + (f" (trials on {facts['trials_ran_on']})" if "trials_ran_on" in facts else "")
