"""EMA of the weights (the paper's classification recipe, decay 0.9995) on Lightning's ``WeightAveraging``.

The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so that a short run's average is not
held by its random initialization (0.9995 alone would keep 1/e of the start after 2000 steps). Validation and
``best.ckpt`` / ``last.ckpt`` see the averaged weights; the raw ones stay in the checkpoint for ``--resume``.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import WeightAveraging


def ema(decay: float) -> WeightAveraging:
    """A callback keeping an exponential moving average of every parameter and buffer, updated after each step."""

    def average(avg: torch.Tensor, new: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        if not avg.is_floating_point():  # counters such as BatchNorm's num_batches_tracked
            return new
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        return torch.lerp(avg, new, 1.0 - d)  # exact where nothing changed (a frozen encoder stays as loaded)

    return WeightAveraging(avg_fn=average, use_buffers=True)
