"""Quantization-aware training (``mcq train TASK --qat --init CHECKPOINT``): a short fine-tune of a trained model
through the graph that its int8 export quantizes, fake-quantized as the XNNPACK quantizer will quantize it
(``mcq.models.pt2e``), so the weights learn to live with int8 and the activations' ranges are learnt on the
training data. Its checkpoint exports to an int8 ExecuTorch program with those ranges (``mcq export ... --precision
int8``, nothing calibrated), to a QDQ ONNX model with them (``--calibration qat``; by default onnxruntime calibrates
the fine-tuned weights, see ``mcq.export.onnx.QAT_BY_DEFAULT``), and to fp32 / fp16 with the fine-tuned weights.

The graph is fixed to the training size, so validation must run at that size too: segmentation and classification
validate on images resized to it; depth (4:3 frames) and detection are not supported.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import torch
from torch import nn

from mcq.errors import McqError
from mcq.models.inference import inference_form
from mcq.models.pt2e import qat_graph
from mcq.recipes import RECIPES, Recipe, quantization_aware
from mcq.tasks.checkpoint import Trained, read_checkpoint
from mcq.tasks.specs import TASKS, task_spec
from mcq.train.module import TaskModule
from mcq.train.specs import train_spec


class QatModel(nn.Module):
    """The fake-quantized graph in training, beside the config of the model it was made from (what the engine reads
    of a task's model: ``cfg``). Its state is the checkpoint's ``model.graph.*``
    (``mcq.tasks.checkpoint.QAT_PREFIX``)."""

    def __init__(self, graph: torch.fx.GraphModule, cfg):
        super().__init__()
        self.graph, self.cfg = graph, cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """A segmentation model's training forward: the graph is the inference form, without an auxiliary head."""
        return self.graph(x), None


def _trained(init: str | Path, task: str) -> Trained:
    if not task_spec(task).qat:
        offered = [name for name, spec in TASKS.items() if spec.qat]
        raise McqError(f"--qat is for {' and '.join(offered)}: the quantization-aware graph is fixed to the training "
                       f"size, and {task} validates at other sizes")
    trained = read_checkpoint(init, task)
    if trained.qat is not None:
        raise McqError(f"{init}: already quantization-aware; --init takes the float checkpoint it was trained from")
    return trained


def qat_recipe(init: str | Path, task: str) -> tuple[str, Recipe]:
    """The encoder of the model in checkpoint ``init`` and its quantization-aware recipe: a share of the run it was
    trained with (``mcq.recipes.quantization_aware``), at its training size."""
    trained = _trained(init, task)
    kind, optim = RECIPES[task], trained.recipe
    return trained.model.cfg.encoder, quantization_aware(kind(**{f.name: optim[f.name] for f in fields(kind)}))


def qat_task(init: str | Path, task: str, recipe: Recipe) -> TaskModule:
    """The ``task`` module of checkpoint ``init`` set up for quantization-aware training with ``recipe`` at its
    training size."""
    module = train_spec(task).module_of(_trained(init, task))
    size = recipe.img_size
    model = inference_form(module.model, (size, size))
    module.model = QatModel(qat_graph(model, torch.zeros(1, 3, size, size)), model.cfg)
    module.hparams.optim = asdict(recipe)
    module.hparams.qat = {"init": str(init), "img_size": size}
    return module.train()
