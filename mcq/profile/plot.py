"""The accuracy-latency plot: one point per model x size x runtime x precision, the Pareto front drawn."""

from __future__ import annotations

from pathlib import Path

MARKERS = {"torch": "o", "onnxruntime": "s", "executorch": "^", "coreml": "D", "web": "P"}


def plot_accuracy_latency(profile: dict, path: str | Path) -> None:
    """Latency (log x) against mIoU; marker area by parameters, shape by runtime, colour by input size when a model
    is profiled at several (else by precision); hollow markers are published accuracies, a cross marks an artifact
    that failed its parity check (timed on random weights; not on the front)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    from mcq.io import atomic_path
    from mcq.profile.frontier import front_cells, plotted

    cells = plotted(profile["cells"])
    sizes = sorted({c["img_size"] for c in cells})
    by_size = any(len({c["img_size"] for c in cells if c["model"] == m}) > 1 for m in {c["model"] for c in cells})
    keys = sizes if by_size else sorted({c["precision"] for c in cells})
    colours = {k: plt.cm.viridis(i / max(len(keys) - 1, 1)) if by_size else f"C{i}" for i, k in enumerate(keys)}
    fig, ax = plt.subplots(figsize=(9.5, 5.5), dpi=120)
    for c in cells:
        colour = colours[c["img_size"] if by_size else c["precision"]]
        published = c["accuracy"]["source"] == "published"
        ax.scatter(c["median_ms"], c["accuracy"]["value"], s=20 + 4 * c["params_m"], marker=MARKERS[c["runtime"]],
                   facecolors="none" if published else [colour], edgecolors=[colour], linewidths=1.5, alpha=0.85)
        if c.get("parity_failed"):
            ax.scatter(c["median_ms"], c["accuracy"]["value"], marker="x", color="0.2", s=30, linewidths=1)
    for c in _labelled(cells, by_size):
        ax.annotate(c["encoder"] + (f" {c['img_size']}" if len(sizes) > 1 else ""),
                    (c["median_ms"], c["accuracy"]["value"]),
                    fontsize=7, xytext=(-4, 6), textcoords="offset points", ha="right")
    front = front_cells(profile["cells"])
    if len(front) > 1:
        xs = [c["median_ms"] for c in front]
        ys = [c["accuracy"]["value"] for c in front]
        ax.step(xs, ys, where="post", color="0.3", linestyle="--", linewidth=1, label="Pareto front")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    threads = profile["settings"]["threads"]
    ax.set_xlabel(f"latency, median ms (batch 1, {threads} thread{'s' if threads != 1 else ''})")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(f"accuracy vs latency on {profile['device']['cpu']}", fontsize=10)
    handles = [Line2D([], [], marker=MARKERS[r], linestyle="", color="0.4", label=r)
               for r in MARKERS if any(c["runtime"] == r for c in cells)]
    handles += [Line2D([], [], marker="o", linestyle="", color=colours[k], label=f"{k} px" if by_size else k)
                for k in keys]
    handles += [Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color="0.4",
                       label="published mIoU (hollow)")]
    if any(c.get("parity_failed") for c in cells):
        handles.append(Line2D([], [], marker="x", linestyle="", color="0.2", label="parity failed (random weights)"))
    if len(front) > 1:
        handles.append(Line2D([], [], color="0.3", linestyle="--", label="Pareto front"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), title="marker area: parameters",
              title_fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _labelled(cells: list[dict], by_size: bool) -> list[dict]:
    """One cell per model (and size, when sizes are compared) and accuracy, its fastest: where its name is written
    (marker shape and colour say runtime and precision), so that neighbouring points do not print over each other."""
    first: dict[tuple, dict] = {}
    for c in sorted(cells, key=lambda c: c["median_ms"]):
        first.setdefault((c["encoder"], c["img_size"] if by_size else None, c["accuracy"]["value"]), c)
    return list(first.values())
