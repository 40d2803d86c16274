"""The profile as a terminal table, ``report.md``, ``profile.json`` and the accuracy-latency plot; the Pareto front."""

from __future__ import annotations

from pathlib import Path

from mcq.io import atomic_path, write_json
from mcq.profile.accuracy import LOWER_IS_BETTER
from mcq.profile.frontier import front_cells, plotted

UNITS_SHORT = {"cpu_only": "cpu", "cpu_and_gpu": "cpu+gpu", "cpu_and_ne": "cpu+ne", "all": "all"}


def runtime_label(cell: dict) -> str:
    """The cell's runtime, with its setting where it names one: Core ML's compute units (``coreml/cpu+gpu``), the
    web's backend (``web/wasm``)."""
    setting = cell.get("compute_units") or cell.get("backend")
    return f"{cell['runtime']}/{UNITS_SHORT.get(setting, setting)}" if setting else cell["runtime"]


COLUMNS = [  # header, width, cell -> text
    ("model", 18, lambda c: c["model"]),
    ("px", 4, lambda c: str(c["img_size"])),
    ("runtime", 14, runtime_label),
    ("prec", 4, lambda c: c["precision"]),
    ("median ms", 9, lambda c: _num(c.get("median_ms"), 1)),
    ("p90 ms", 8, lambda c: _num(c.get("p90_ms"), 1)),
    ("load ms", 8, lambda c: _num(c.get("load_ms"), 0)),
    ("peak MB", 7, lambda c: _num(c.get("peak_mem_mb"), 0)),
    ("size MB", 7, lambda c: _num(c.get("size_mb"), 1)),
    ("params M", 8, lambda c: _num(c.get("params_m"), 1)),
    ("GFLOPs", 7, lambda c: _num(c.get("gflops"), 2)),
    ("pre ms", 6, lambda c: _num(c.get("pre_ms"), 1)),
    ("post ms", 7, lambda c: _num(c.get("post_ms"), 1)),
    ("agree %", 7, lambda c: _agreement(c)),
    ("accuracy", 12, lambda c: _accuracy(c)),
]


def _num(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _agreement(cell: dict) -> str:
    p = cell.get("parity")
    if p == "reference":
        return "ref"
    if isinstance(p, dict) and "mean_rel" in p:  # depth: mean relative error of the depth map
        return f"rel {p['mean_rel']:.0e}"
    return f"{100 * p['agreement']:.2f}" if isinstance(p, dict) and "agreement" in p else "-"


def _accuracy(cell: dict) -> str:
    acc = cell.get("accuracy")
    if not acc:
        return "-"
    digits = 3 if acc["metric"] in LOWER_IS_BETTER else 1
    change = f" ({-acc['drop']:+.{digits}f})" if "drop" in acc else ""
    return f"{acc['value']:.{digits}f}{change}{'*' if acc['source'] == 'published' else ''} {acc['metric']}"


def _seg_post(settings: dict) -> str:
    """What a seg cell's post-processing is, by the profile's ``outputs``."""
    if settings.get("outputs") == "labels":
        return "the labels from the model (argmax in the graph) resized to the image, nearest"
    return "upsample to the image + argmax"


def _published(cells: list[dict]) -> bool:
    """Whether any cell shows a published accuracy (the reports explain the * only then)."""
    return any((c.get("accuracy") or {}).get("source") == "published" for c in cells)


def _compared(cells: list[dict]) -> bool:
    """Whether any cell's accuracy is shown against its checkpoint's (the reports explain the (+-x) only then)."""
    return any("drop" in (c.get("accuracy") or {}) for c in cells)


WEB_NOTE = ("web: onnxruntime-web in headless Chromium, the web app timing itself in real time (latency: session.run "
            "alone; load: the model fetched from localhost and its session created, with the WASM's start-up; "
            "pre/post: the page's JavaScript; peak memory not measured; threads: onnxruntime-web's own count)")


def _web(cells: list[dict]) -> bool:
    """Whether any web cell ran (the reports say how it is timed only then)."""
    return any(c["runtime"] == "web" and c["status"] == "ran" for c in cells)


def status_text(cell: dict) -> str:
    graph = f" ({cell['graph']} graph)" if cell.get("graph") else ""
    failed = f" (parity failed on random weights, timed all the same: {cell['parity_failed']})" \
        if cell.get("parity_failed") else ""
    n = cell.get("threads")  # web: onnxruntime-web's own count
    threads = f" ({n} thread{'s' if n != 1 else ''})" if n else ""
    return cell["status"] + graph + threads + failed + (f": {cell['why']}" if cell.get("why") else "")


def format_table(profile: dict) -> str:
    """The terminal table: one row per cell, figures then status."""
    from mcq.profile.device import device_line

    widths = [max([w, *(len(f(c)) for c in profile["cells"])]) for _, w, f in COLUMNS]  # a long name widens its column
    head = " ".join(f"{h:<{w}}" if i < 4 else f"{h:>{w}}" for i, ((h, _, _), w) in enumerate(zip(COLUMNS, widths))) \
        + "  status"
    rows = [" ".join(f"{f(c):<{w}}" if i < 4 else f"{f(c):>{w}}"
                     for i, ((_, _, f), w) in enumerate(zip(COLUMNS, widths)))
            + "  " + status_text(c) for c in profile["cells"]]
    s = profile["settings"]
    notes = [device_line(profile["device"]),
             f"batch 1; median and p90 of {s['runs']} runs after {s['warmup']} warm-up; load: open the artifact (cold "
             f"start); peak MB: {s['memory']}; pre: resize + normalise, post: what an app does with the output "
             f"(seg: {_seg_post(s)}; det: the Python part of its graph) on one image of the data; GFLOPs by fvcore "
             "(a multiply-add counts one); agree: parity with PyTorch"
             + ("; accuracy* published (paper), not measured here" if _published(profile["cells"]) else "")
             + ("; accuracy (+-x): against the checkpoint's torch fp32 eval" if _compared(profile["cells"]) else "")
             + (f"; {WEB_NOTE}" if _web(profile["cells"]) else "")]
    front = front_cells(profile["cells"])
    if front:
        notes.append("Pareto front (fastest for its accuracy): " + ", ".join(
            f"{c['model']} {c['img_size']}px {runtime_label(c)} {c['precision']}" for c in front))
    return "\n".join([*notes[:1], head, *rows, *notes[1:]])


def format_markdown(profile: dict, plot_name: str | None) -> str:
    """``report.md``: the device, the settings, the table, the front, the accuracy sources and the plot."""
    from mcq.profile.device import device_line

    s, cells = profile["settings"], profile["cells"]
    lines = [f"# mcq profile, {profile['created']}", "", f"Device: {device_line(profile['device'])}.", "",
             f"Batch 1, {s['threads']} threads for every runtime; latency: median and p90 of {s['runs']} runs after "
             f"{s['warmup']} warm-up runs; load: time to open the artifact in its runtime (cold start, the first run "
             f"is `first_run_ms` in profile.json); peak memory: {s['memory']}; pre-processing: resize + normalise, "
             f"post-processing: what an app does with the output (seg: {_seg_post(s)}; depth: "
             "upsample; cls: softmax + top 5; det: the part of Mask R-CNN its graph leaves to Python, "
             f"`mcq.profile.inputs`), on one "
             f"image of the data ({s['data']}); GFLOPs counted by fvcore (a multiply-add is one); agree %: pixels "
             "(seg) or top-1 classes (cls) that match PyTorch's in the export's parity check."
             + (" Accuracy marked * is the paper's published figure for the architecture, not measured on these "
                "weights." if _published(cells) else "")
             + (" Accuracy (+-x): the change against the checkpoint's own eval in PyTorch fp32 on the same data "
                "and size." if _compared(cells) else "")
             + (f" {WEB_NOTE[0].upper()}{WEB_NOTE[1:]}." if _web(cells) else "")
             + " The plot and the Pareto front are the ADE20K mIoU cells.", "",
             "| " + " | ".join(h for h, _, _ in COLUMNS) + " | status |",
             "|" + "---|" * (len(COLUMNS) + 1)]
    lines += ["| " + " | ".join(f(c) for _, _, f in COLUMNS) + f" | {status_text(c)} |" for c in cells]
    front = front_cells(cells)
    if front:
        lines += ["", "Pareto front (no other cell is both faster and more accurate): " + ", ".join(
            f"{c['model']} {c['img_size']} px {runtime_label(c)} {c['precision']}" for c in front) + "."]
    sources = sorted({(c["model"], c["accuracy"]["source"], c["accuracy"]["note"]) for c in cells if c.get("accuracy")})
    if sources:
        lines += ["", "Accuracy sources:", ""] + [f"- {m}: {src}, {note}" for m, src, note in sources]
    if plot_name:
        lines += ["", f"![accuracy vs latency]({plot_name})"]
    if _per_op_cells(cells):
        lines += format_per_op(cells)
    return "\n".join(lines) + "\n"


PER_OP_TOP = 10  # ops per cell in report.md (ops/<cell>.csv has them all)


def cell_name(cell: dict) -> str:
    """A file name for the cell: ``mci0+fpn_512_executorch_fp32`` (Core ML's compute units included)."""
    return "_".join([cell["model"], str(cell["img_size"]), runtime_label(cell).replace("/", "-"), cell["precision"]])


def _per_op_cells(cells: list[dict]) -> list[dict]:
    return [c for c in cells if c.get("per_op") or c.get("per_op_note")]


def format_per_op(cells: list[dict]) -> list[str]:
    """report.md's "Per-op" section: each cell's top ops, or the one line that says why it has none."""
    from mcq.profile.per_op import cut

    lines = ["", "## Per-op", "",
             "Where each call's time goes, from each runtime's own profiler in runs after the timed ones (mean per "
             "call of the same number of runs; ExecuTorch: ETDump, onnxruntime: its profiler, torch: torch.profiler, "
             "ops' self time). delegated: the op ran inside ExecuTorch's XNNPACK delegate (yes) or as a kernel outside "
             "it (no); for onnxruntime, in an execution provider other than the CPU's; - for eager PyTorch. share: of "
             "the call's total in the same trace; (not in an op): the runtime's own time between ops (and Python, for "
             f"torch). The top {PER_OP_TOP} per cell; all of them in `ops/<cell>.csv`."]
    for c in _per_op_cells(cells):
        title = f"{c['model']} {c['img_size']} px {runtime_label(c)} {c['precision']}"
        if not c.get("per_op"):
            lines += ["", f"{title}: {c['per_op_note']}."]
            continue
        lines += ["", f"### {title} (`ops/{cell_name(c)}.csv`)", "", "| op | delegated | ms | share |",
                  "|---|---|---:|---:|"]
        lines += [f"| {r['op']} | {_delegated(r['delegated'])} | {r['ms']:.3f} | {100 * r['share']:.1f}% |"
                  for r in cut(c["per_op"], PER_OP_TOP)]
    return lines


def _delegated(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def write_outputs(profile: dict, out: Path) -> dict:
    """Write ``profile.json``, ``report.md``, ``accuracy_latency.png`` (when any cell has both figures) and, for the
    cells with per-op rows, ``ops/<cell>.csv`` into ``out``; return their paths."""
    from mcq.profile.per_op import write_ops_csv
    from mcq.profile.plot import plot_accuracy_latency

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": str(out / "profile.json"), "report": str(out / "report.md")}
    ops = [c for c in profile["cells"] if c.get("per_op")]
    for c in ops:
        write_ops_csv(out / "ops" / f"{cell_name(c)}.csv", c["per_op"])
    if ops:
        paths["ops"] = str(out / "ops")
    if plotted(profile["cells"]):
        paths["plot"] = str(out / "accuracy_latency.png")
        plot_accuracy_latency(profile, paths["plot"])
    with atomic_path(paths["report"]) as tmp:
        tmp.write_text(format_markdown(profile, "accuracy_latency.png" if "plot" in paths else None))
    write_json(paths["json"], {**profile, "outputs": paths})
    return paths
