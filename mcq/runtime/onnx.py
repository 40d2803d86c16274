"""onnxruntime: an exported ``.onnx`` model run on the CPU execution provider."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort


def run_all(path: Path, threads: int | None = None) -> Callable[[np.ndarray], list[np.ndarray]]:
    """Every output of the model for one input batch."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # not the shape warnings of Mask R-CNN's mask-pasting loop, one per detection
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})


def read_metadata(path: Path) -> dict:
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props["mcq"])
