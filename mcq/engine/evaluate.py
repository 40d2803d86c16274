"""``evaluate_seg``: single-scale validation of a trained checkpoint on a dataset."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from mcq.data import ADE20K, SegTransform, collate_seg, default_seg_data
from mcq.engine.checkpoint import load_seg_task
from mcq.errors import McqError
from mcq.io import write_json


def evaluate_seg(
    checkpoint: str | Path, data: str | Path | None = None, img_size: int | None = None, batch_size: int = 4,
    workers: int = 2, json_out: str | Path | None = None, accelerator: str = "auto",
) -> dict:
    """mIoU, mAcc, aAcc and per-class figures of ``checkpoint`` on the validation split of ``data``."""
    task = load_seg_task(checkpoint)
    model, class_names = task.model, task.class_names
    size = img_size or task.hparams.optim["img_size"]
    model.check_input_size(size, size)
    data = Path(data) if data else default_seg_data()
    ds = ADE20K(data, "validation", SegTransform(size, False, model.encoder.mean, model.encoder.std))
    if ds.num_classes != len(class_names):
        raise McqError(
            f"{data}: {ds.num_classes} classes, but {checkpoint} was trained on {len(class_names)}; "
            f"evaluate on a dataset with the same objectInfo150.txt"
        )
    trainer = L.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False)
    loader = DataLoader(ds, batch_size, num_workers=workers, collate_fn=collate_seg)
    trainer.validate(task, loader, verbose=False)
    metrics = {"checkpoint": str(checkpoint), "data": str(data), "img_size": size,
               "encoder": model.cfg.encoder, "head": model.cfg.head, **task.metrics}
    if json_out:
        write_json(json_out, metrics)
    return metrics
