"""The paper's mobile trade-off measured on this machine: a large baseline's latency over MCi2's, side by side.

Each pair (default: Swin-L + UperNet at 640 px against MCi2 + SemanticFPN at 512 px, and ViT-Adapter-B + UperNet
at 512 px against MCi2 at 512 px) runs on one runtime (onnxruntime fp32 by default; models exported by mcq's own
exporter) at a fixed thread count, in alternating blocks A B A B ..., each block ``--runs`` timed calls after
``--warmup`` untimed ones (``mcq.profile.measure.time_calls``); a latency is the median of all its blocks' calls.
Beside the latency ratio: the parameter and GFLOP ratios (``mcq.profile.measure``: fvcore, a multiply-add counts
one), and for every model its latency over the floor its GFLOPs set at this CPU's matmul rate, measured in the same
run with torch at the same thread count (in the same unit: a multiply-add counts one). Weights are random
(latency does not depend on their values); 150 classes (ADE20K's).

    taskset -c 1 .venv/bin/python benchmarks/tradeoff.py --threads 1 --runs 3 --json tradeoff.json
    .venv/bin/python benchmarks/tradeoff.py --runtime torch --pairs mci0@64:mci0@64 --runs 2   # a quick check
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from mcq.models.inference import inference_form
from mcq.models.segmentor import create_seg_model
from mcq.profile.measure import gflops, params_m, summarize, time_calls
from mcq.profile.config import RUNTIMES

DEFAULT_PAIRS = "swin_l@640:mci2@512,vit_adapter_b@512:mci2@512"


def parse_pairs(text: str) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """``"a@640:b@512,..."`` -> [((a, 640), (b, 512)), ...]."""
    pairs = []
    for item in text.split(","):
        a, b = item.split(":")
        pairs.append(tuple((name, int(size)) for name, size in (m.split("@") for m in (a, b))))
    return pairs


def matmul_gmacs(threads: int, n: int = 1024, runs: int = 10) -> float:
    """Multiply-adds per second (G) of an n x n fp32 matmul in torch at ``threads`` threads (median call)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    ms = summarize(time_calls(lambda: torch.mm(a, b), runs, warmup=2))["median_ms"]
    return n ** 3 / (ms / 1000) / 1e9


def prepare(name: str, size: int, runtime: str, threads: int, folder: Path) -> tuple[dict, Callable[[], object]]:
    """A random-init segmentation model of encoder ``name``: its facts and a runner of one image on ``runtime``."""
    from mcq.export.formats import format_module
    from mcq.runtime.backends import SUFFIXES, runner

    torch.manual_seed(0)
    model = inference_form(create_seg_model(name, 150), (size, size))
    x = torch.randn(1, 3, size, size)
    facts = {"model": f"{name}+{model.cfg.head}", "img_size": size, "params_m": params_m(model),
             "gflops": gflops(model, x)}
    fmt = RUNTIMES[runtime]
    if fmt is None:
        def run() -> None:
            with torch.no_grad():
                model(x)
        return facts, run
    module = format_module(fmt)
    path = folder / f"{name}_{size}{SUFFIXES[fmt]}"
    start = time.perf_counter()
    module.export(model, x, path, "fp32", None, {})
    facts["export_s"] = time.perf_counter() - start
    run, xn = runner(fmt, path, threads), x.numpy()
    return facts, lambda: run(xn)


def measure_pair(runs: dict, blocks: int, n: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds of each runner's calls, in blocks A B A B ... (``blocks`` per runner)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(blocks):
        for name, run in runs.items():
            times[name] += time_calls(run, n, warmup)
    return times


def tradeoff(pairs, runtime: str, threads: int, runs: int, blocks: int, warmup: int) -> dict:
    torch.set_num_threads(threads)
    rate = matmul_gmacs(threads)
    result = {"runtime": f"{runtime} fp32", "threads": threads, "runs_per_block": runs, "blocks": blocks,
              "warmup": warmup, "weights": "random init (latency does not depend on the values)",
              "matmul_gmacs": rate, "pairs": []}
    prepared: dict[tuple[str, int], tuple[dict, Callable[[], object]]] = {}  # a model in two pairs is exported once
    with tempfile.TemporaryDirectory() as tmp:
        for (a, size_a), (b, size_b) in pairs:
            facts, runners = {}, {}
            for key, model in (("a", (a, size_a)), ("b", (b, size_b))):
                if model not in prepared:
                    prepared[model] = prepare(*model, runtime, threads, Path(tmp))
                facts[key], runners[key] = dict(prepared[model][0]), prepared[model][1]
            times = measure_pair(runners, blocks, runs, warmup)
            for key in facts:
                f = facts[key]
                f.update(summarize(times[key]))
                f["floor_ms"] = 1000 * f["gflops"] / rate
                f["x_floor"] = f["median_ms"] / f["floor_ms"]
            fa, fb = facts["a"], facts["b"]
            result["pairs"].append({"a": fa, "b": fb, "latency_ratio": fa["median_ms"] / fb["median_ms"],
                                    "params_ratio": fa["params_m"] / fb["params_m"],
                                    "gflops_ratio": fa["gflops"] / fb["gflops"]})
    return result


def report(result: dict) -> str:
    threads = f"{result['threads']} thread{'s' if result['threads'] != 1 else ''}"
    lines = [f"{result['runtime']}, {threads}; latency: median of {result['blocks']} blocks of "
             f"{result['runs_per_block']} calls per model, the two models of a pair in alternating blocks "
             f"({result['warmup']} warm-up calls before each); weights: {result['weights']}",
             f"matmul (torch, 1024x1024 fp32, same threads): {result['matmul_gmacs']:.1f} G multiply-adds/s; "
             "floor = GFLOPs (fvcore, a multiply-add counts one) / that rate"]
    for p in result["pairs"]:
        a, b = p["a"], p["b"]
        lines.append(f"{a['model']}@{a['img_size']} / {b['model']}@{b['img_size']}: latency "
                     f"{a['median_ms']:.1f} / {b['median_ms']:.1f} ms = {p['latency_ratio']:.2f}x; params "
                     f"{a['params_m']:.1f} / {b['params_m']:.1f} M = {p['params_ratio']:.2f}x; GFLOPs "
                     f"{a['gflops']:.1f} / {b['gflops']:.1f} = {p['gflops_ratio']:.2f}x")
        for f in (a, b):
            lines.append(f"  {f['model']}@{f['img_size']}: {f['median_ms']:.1f} ms (p90 {f['p90_ms']:.1f}) = "
                         f"{f['x_floor']:.2f}x its matmul floor of {f['floor_ms']:.1f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default=DEFAULT_PAIRS, help="A@size:B@size,... (latency of A over B)")
    ap.add_argument("--runtime", default="onnxruntime", choices=[r for r in RUNTIMES if r not in ("coreml", "web")])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3, help="timed calls per block")
    ap.add_argument("--blocks", type=int, default=2, help="blocks per model (alternating A B A B)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls before each block")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    result = tradeoff(parse_pairs(args.pairs), args.runtime, args.threads, args.runs, args.blocks, args.warmup)
    print(report(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
