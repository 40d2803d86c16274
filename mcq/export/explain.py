"""Where an export diverges: error maps per image, and the first layer whose output drifts from PyTorch.

``error_maps`` draws, for each parity image of a segmentation model, the image, PyTorch's classes, the artifact's
classes and the pixels where they differ. ``layer_drift`` exports the model again with the output of every leaf module
(convolution, activation, upsampling, ...) exposed as an extra output, through the same format code and
precision (the same quantization and calibration for int8), runs it in the format's own runtime next to
PyTorch, and compares the two layer by layer in call order. Drift is the signal-to-noise ratio of the
artifact's output against PyTorch's, in dB (higher is closer): 60 dB is a relative error of about 1e-3.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from mcq.tasks.classmaps import colourize, labels_at
from mcq.tasks.specs import task_spec
from mcq.export.formats import format_module
from mcq.export.quantization import QAT_CALIBRATION
from mcq.io import staged_dir, write_json
from mcq.runtime.backends import SUFFIXES, backend

# ExecuTorch: the XNNPACK delegate cannot return the values inside its fused subgraphs, so the tapped program
# runs on the portable kernels (the same quantized or half program; the kernels differ, the rounding does not)
_TAP_OPTIONS = {"executorch": {"backend": "portable"}}
# a layer "drifts" when its SNR against PyTorch falls below this (dB); int8 rounding alone costs ~40 dB per tensor
DRIFT_DB = {"fp32": 60.0, "fp16": 40.0, "int8": 20.0}
_SKIP = (nn.Identity, nn.Dropout, nn.Dropout2d)
# ops a runtime fuses into the op before them (conv + BN + activation): the value between them does not exist there
_FUSED = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Sigmoid)


def _unfused_leaves(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Leaf modules in call order, less those that return their input and those whose output goes straight
    into a BN or activation module (which a runtime fuses with them)."""
    events: list[tuple[str, str, nn.Module, int]] = []  # (start | end, name, module, id of input | output)
    hooks = []
    for name, m in model.named_modules():
        leaf = name and not any(m.children()) and not isinstance(m, _SKIP)
        if leaf or isinstance(m, _FUSED):
            hooks.append(m.register_forward_pre_hook(lambda mod, args, n=name: events.append(
                ("start", n, mod, id(args[0]) if args else 0))))
            hooks.append(m.register_forward_hook(lambda mod, args, out, n=name: events.append(
                ("end", n, mod, -1 if out is args[0] and not getattr(mod, "inplace", False) else id(out)))))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    leaves, fused = [], set()
    for i, (kind, name, mod, out) in enumerate(events):
        if kind != "end" or any(mod.children()) or out == -1:
            continue
        leaves.append(name)
        nxt = next((e for e in events[i + 1:] if e[0] == "start"), None)
        if nxt and isinstance(nxt[2], _FUSED) and nxt[3] == out:
            fused.add(name)
    return [n for n in dict.fromkeys(leaves) if n not in fused]


class LayerTaps(nn.Module):
    """``model`` returning ``(output, *leaf_outputs)``: the output of every leaf module, in call order, except
    where the next module fuses with it (``_unfused_leaves``).

    Modules are looked up by name on every call, so a format that swaps a module for an equivalent one
    (same name) still reports it. ``names`` holds the names of the last call's extra outputs.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor):
        super().__init__()
        self.model = model
        self.leaves = _unfused_leaves(model, example)
        self.names: list[str] = []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        names, taps, handles = [], [], []

        def keep(name: str):
            def hook(module, args, out):
                if isinstance(out, torch.Tensor) and out.is_floating_point():
                    names.append(name)
                    taps.append(out)
            return hook

        for name in self.leaves:
            handles.append(self.model.get_submodule(name).register_forward_hook(keep(name)))
        try:
            out = self.model(x)
        finally:
            for h in handles:
                h.remove()
        self.names = names
        return (out, *taps)


def snr_db(out: np.ndarray, ref: np.ndarray) -> float:
    """10 log10(|ref|^2 / |out - ref|^2); inf when they are equal."""
    noise = float(np.sum((out.astype(np.float64) - ref) ** 2))
    signal = float(np.sum(ref.astype(np.float64) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-30) / noise)


def layer_drift(fmt: str, model: nn.Module, image: torch.Tensor, precision: str, calib: torch.Tensor | None,
                calibration: str | None = None, float_modules: tuple[str, ...] = ()) -> dict:
    """Compare every leaf module's output in the artifact's runtime with PyTorch's on one image (1CHW batch);
    int8 calibrated with ``calibration``, with ``float_modules`` kept float (the artifact's)."""
    taps = LayerTaps(model, image).eval()
    with torch.no_grad():
        ref = [t.numpy() for t in taps(image)]
    names = list(taps.names)
    module = format_module(fmt)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"taps{SUFFIXES[fmt]}"
        quant = {"calibration": calibration} if calibration else {}
        if float_modules:  # named in the task model, which the tapped model holds as ``model``
            quant["float_modules"] = tuple(f"model.{m}" for m in float_modules)
        module.export(taps, image, path, precision, calib, {}, **_TAP_OPTIONS.get(fmt, {}), **quant)
        outs = backend(fmt).run_all(path)(image.numpy())
    if len(outs) != len(ref):
        raise RuntimeError(f"the tapped artifact has {len(outs)} outputs, PyTorch {len(ref)}")
    rows = []
    for name, o, r in zip(["(output)", *names], outs, ref):
        o = np.asarray(o, dtype=np.float32).reshape(r.shape)
        rows.append({"layer": name, "op": type(model.get_submodule(name)).__name__ if name != "(output)" else "",
                     "shape": list(r.shape), "snr_db": snr_db(o, r),
                     "max_rel": float(np.abs(o - r).max() / max(float(np.abs(r).max()), 1e-12))})
    output, layers = rows[0], rows[1:]
    limit = DRIFT_DB[precision]
    first = next((row for row in layers if row["snr_db"] < limit), None)
    return {"threshold_db": limit, "first_drift": first, "output": output, "layers": layers,
            "worst": sorted(layers, key=lambda row: row["snr_db"])[:5]}


def _denormalise(x: torch.Tensor, mean, std) -> Image.Image:
    rgb = x.permute(1, 2, 0).numpy() * np.asarray(std) + np.asarray(mean)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))


def error_map(image: Image.Image, ref: np.ndarray, out: np.ndarray, palette: list[list[int]]) -> Image.Image:
    """Four panels side by side: the image, PyTorch's classes, the artifact's, and in red where they differ."""
    w, h = image.size
    differ = ref != out
    grey = np.asarray(image.convert("L").convert("RGB")) // 2
    grey[differ] = (255, 0, 0)
    panels = [image, colourize(ref, palette).convert("RGB"), colourize(out, palette).convert("RGB"),
              Image.fromarray(grey)]
    titles = ["image", "PyTorch", "artifact", f"differs: {100 * differ.mean():.2f}%"]
    sheet = Image.new("RGB", (4 * w, h + 14), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (panel, title) in enumerate(zip(panels, titles)):
        sheet.paste(panel, (i * w, 14))
        draw.text((i * w + 2, 1), title, fill="black")
    return sheet


def error_maps(run: Callable[[np.ndarray], np.ndarray], model: nn.Module, images: torch.Tensor, meta: dict,
               out: Path) -> list[dict]:
    """Write ``image_NN.png`` (``error_map``) per image into ``out``; return the share of differing pixels of each."""
    rows = []
    for i, x in enumerate(images):
        with torch.no_grad():
            ref = model(x[None]).argmax(1)[0].numpy()
        pred = labels_at(np.asarray(run(x[None].numpy())), *ref.shape)  # the artifact's logits or labels
        sheet = error_map(_denormalise(x, meta["input"]["mean"], meta["input"]["std"]), ref, pred, meta["palette"])
        sheet.save(out / f"image_{i:02d}.png")
        rows.append({"image": f"image_{i:02d}.png", "differ": float((ref != pred).mean())})
    return rows


def explain_artifact(fmt: str, run: Callable[[np.ndarray], np.ndarray], model: nn.Module, images: torch.Tensor,
                     calib: torch.Tensor | None, precision: str, meta: dict, out: Path) -> dict:
    """Error maps for ``images`` (segmentation) and the layer drift on the first of them, written to the folder
    ``out`` (``image_NN.png``, ``layers.json``); returns the summary that goes into the export report."""
    with staged_dir(out) as tmp:
        maps = error_maps(run, model, images, meta, tmp) if task_spec(meta["task"]).error_maps else []
        int8 = meta.get("int8", {})
        calibration = int8.get("calibration")
        if calibration == QAT_CALIBRATION:  # its ranges are its training's: the tapped model has none to repeat
            return {"dir": str(out), "error_maps": maps,
                    "drift_skipped": "layer drift is not available for a quantization-aware checkpoint's int8"}
        drift = layer_drift(fmt, model, images[:1], precision, calib, calibration,
                            tuple(int8.get("float_modules", ())))
        write_json(tmp / "layers.json", drift)
    summary = {k: drift[k] for k in ("threshold_db", "first_drift", "output", "worst")}
    if fmt in _TAP_OPTIONS:
        summary["layers_run_on"] = ", ".join(f"{k}={v}" for k, v in _TAP_OPTIONS[fmt].items())
    return {"dir": str(out), "error_maps": maps, "drift": summary}


def format_drift(name: str, drift: dict) -> str:
    """A few lines for the terminal: the first drifting layer and the worst five."""
    first = drift["first_drift"]
    head = (f"{name}: first layer below {drift['threshold_db']:.0f} dB: "
            + (f"{first['layer']} ({first['op']}, {first['snr_db']:.1f} dB)" if first else "none")
            + f"; output {drift['output']['snr_db']:.1f} dB")
    worst = [f"    {r['snr_db']:>6.1f} dB  {r['layer']} ({r['op']})" for r in drift["worst"]]
    return "\n".join([head, "  worst layers:", *worst])
