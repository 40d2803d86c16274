"""Single-scale validation of a training checkpoint of any task on a dataset, with Lightning's loop (an artifact
through its own runtime: ``mcq.runtime.evaluate``)."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from mcq.data.clip_shards import parse_captions
from mcq.errors import McqError
from mcq.io import write_json
from mcq.tasks.checkpoint import read_checkpoint
from mcq.train.specs import train_spec


def evaluate(
    task: str, checkpoint: str | Path, data: str | Path | None = None, img_size: int | None = None, batch_size: int = 4,
    workers: int = 2, json_out: str | Path | None = None, accelerator: str = "auto", captions: str | None = None,
) -> dict:
    """The ``task`` metrics of ``checkpoint`` on the validation split of ``data`` (default: the embedded dataset);
    clip: image<->text recall@1/5 (the training run's validation) on the held-back shards, for the caption kinds
    ``captions`` (default: those the model was trained on)."""
    spec = train_spec(task)
    if captions and not spec.task.image_text:
        raise McqError(f"--captions is for clip; {task} has no captions")
    module = spec.module_of(read_checkpoint(checkpoint, task))
    if captions:
        module.captions = parse_captions(captions)
    size = img_size or module.hparams.optim["img_size"]
    data = Path(data) if data else spec.task.default_data()
    loader = spec.eval_loader(module, data, size, batch_size, workers, checkpoint)
    trainer = L.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False)
    trainer.validate(module, loader, verbose=False)
    metrics = {"checkpoint": str(checkpoint), "data": str(data), "img_size": size, **spec.task.describe(module.hparams),
               **module.metrics}
    if json_out:
        write_json(json_out, metrics)
    return metrics
