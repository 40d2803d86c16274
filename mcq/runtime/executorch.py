"""The ExecuTorch Python runtime: a ``.pte`` program run with the backends this build of ExecuTorch has (XNNPACK
here; a Core ML delegated program runs only on Apple devices, so ``run_all`` is None and ``inspect`` checks what it
can)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch


def delegates(path: Path) -> list[str]:
    """The backends the program's delegated parts need (e.g. ``XnnpackBackend``, ``CoreMLBackend``)."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    pte = deserialize_pte_binary(Path(path).read_bytes())
    program = getattr(pte, "program", pte)
    return sorted({d.id for plan in program.execution_plan for d in plan.delegates})


def _missing_backends(path: Path) -> list[str]:
    from executorch.extension.pybindings import portable_lib

    return sorted(set(delegates(path)) - set(portable_lib._get_registered_backend_names()))


def inspect(path: Path, meta: dict) -> dict:
    """What can be checked of a program whose delegate cannot run here: it parses, its method and delegates."""
    from executorch.runtime import Runtime

    found = delegates(path)
    program = Runtime.get().load_program(str(path))
    checks = {"loads": True, "forward": "forward" in program.method_names,
              "delegated": meta.get("backend", "xnnpack") != "coreml" or "CoreMLBackend" in found}
    why = [k for k, ok in checks.items() if not ok]
    result = {"numerics": f"not run: {', '.join(_missing_backends(path))} is not in this ExecuTorch runtime (Core ML "
                          f"runs on Apple devices); program, method and delegates checked",
              "checks": checks, "delegates": found, "passed": not why, "precision": meta.get("precision", ""),
              "thresholds": {}}
    if why:
        result["why"] = "failed checks: " + ", ".join(why)
    return result


def set_threads(threads: int | None) -> None:
    """Give XNNPACK's threadpool ``threads`` threads (None: leave it). It is process-wide: the last program opened
    with ``threads`` sets it for all."""
    from executorch.extension.pybindings import portable_lib

    if threads and portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)


def run_all(path: Path, threads: int | None = None) -> Callable[[np.ndarray], list[np.ndarray]] | None:
    """Every output of the program for one input batch; None where a backend it needs is not here."""
    from executorch.runtime import Runtime

    if _missing_backends(path):
        return None

    runtime = Runtime.get()
    set_threads(threads)
    program = runtime.load_program(str(path))
    method = program.load_method("forward")

    def run(x: np.ndarray) -> list[np.ndarray]:
        outs = method.execute([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))])
        return [o.numpy().copy() for o in outs]

    run.runtime, run.program, run.method = runtime, program, method  # kept alive as long as ``run`` is
    return run


