"""``train``: one function from a dataset and a backbone to a finished run directory, for every task.

A run directory holds ``config.json`` (the resolved config), ``checkpoints/{best,last}.ckpt``,
``logs/metrics.csv`` and, once finished, ``metrics.json``. The same call runs on one CPU or on many
GPUs and nodes (Lightning DDP; launch with ``torchrun`` or SLURM, or let Lightning spawn local ranks).
What differs between tasks (recipe, datasets, module, monitored metric) comes from ``mcq.train.specs``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.trainer.states import TrainerFn

from mcq.errors import McqError
from mcq.io import write_json
from mcq.models.clip_init import LoadReport, load_clip_init
from mcq.models.encoders import create_encoder
from mcq.recipes import Recipe
from mcq.tasks.checkpoint import is_task_checkpoint, read_checkpoint
from mcq.train.config import CLIP_OPTIONS, TrainConfig
from mcq.train.distributed import is_rank_zero
from mcq.train.module import TaskModule
from mcq.train.qat import qat_recipe, qat_task
from mcq.train.sampling import ExactResume, ResumableSampler
from mcq.train.specs import train_spec


def resolve_recipe(cfg: TrainConfig) -> Recipe:
    """The task's recipe with the user's overrides applied (the recipe file is untouched)."""
    defaults = TrainConfig.__dataclass_fields__
    given = [k for k in CLIP_OPTIONS if getattr(cfg, k) != defaults[k].default]
    if given and not train_spec(cfg.task).task.image_text:
        raise McqError(f"--{given[0].replace('_', '-')} is for clip; {cfg.task} takes --backbone and --data")
    if cfg.qat and not cfg.init:
        raise McqError("--qat fine-tunes a trained model: pass its checkpoint with --init")
    recipe = qat_recipe(cfg.init, cfg.task)[1] if cfg.qat else train_spec(cfg.task).recipe(cfg)
    names = ("max_steps", "batch_size", "img_size", "lr", "drop_path", "crop_scale", "layer_decay", "val_every",
             "fpn_channels", "roi_batch_size")
    overrides = {k: getattr(cfg, k) for k in names if getattr(cfg, k) is not None}
    for k in overrides:
        if not hasattr(recipe, k):
            raise McqError(f"--{k.replace('_', '-')}: the {cfg.task} recipe has no such setting")
    return replace(recipe, **overrides)


def default_run_dir(cfg: TrainConfig) -> Path:
    return Path(f"runs/{cfg.task}-{train_spec(cfg.task).model_name(cfg)}" + ("-lp" if cfg.linear_probe else "")
                + ("-qat" if cfg.qat else ""))


def _on_gpu(accelerator: str) -> bool:
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def default_precision(accelerator: str) -> str:
    """bf16 autocast where the device has it (recent GPUs), else fp32."""
    return "bf16-mixed" if _on_gpu(accelerator) and torch.cuda.is_bf16_supported() else "32-true"


def _prepare_run(cfg: TrainConfig) -> tuple[Path, bool]:
    """Resolve the run directory; return it and whether this call created it."""
    run = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    if not is_rank_zero():
        return run, False
    if cfg.resume:
        if _resume_checkpoint(run) is None:
            raise McqError(f"{run}: nothing to resume (no checkpoints/last.ckpt); drop --resume to start a new run")
        return run, False
    if run.exists() and any(run.iterdir()):
        if not cfg.exist_ok:
            raise McqError(f"{run}: already holds a run; pass --resume to continue it, --exist-ok to overwrite, "
                           "or another --out")
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    return run, True


def _resume_checkpoint(run: Path) -> Path | None:
    """The checkpoint an interrupted run stopped at, else its last periodic one."""
    for name in ("interrupted.ckpt", "last.ckpt"):
        if (run / "checkpoints" / name).is_file():
            return run / "checkpoints" / name
    return None


class _InterruptedCheckpoint(L.Callback):
    """Save ``interrupted.ckpt`` when an exception (Ctrl-C included) stops a run after its first step, for
    ``--resume``; removed when the run finishes. Before the first step (e.g. bad input in the first batch)
    there is nothing to resume, and ``train`` removes the run directory it made."""

    def __init__(self, path: Path):
        self.path = path

    def on_exception(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step > 0:
            trainer.save_checkpoint(self.path, weights_only=False)  # the whole state, for --resume

    def on_fit_end(self, trainer: L.Trainer, *args) -> None:
        trainer.strategy.remove_checkpoint(self.path)


class _LastCheckpoint(Checkpoint):
    """``last.ckpt``: the run after each validation and after its last step. Lightning's ``save_last`` writes it
    only when ``best.ckpt`` improves (2.6), and not after steps taken since the last validation. (Not at
    ``on_train_end``: the EMA callback has put the averaged weights into the model by then, and the raw ones that
    ``--resume`` needs would be lost.) The last step is saved once: after its validation when it has one."""

    def __init__(self, path: Path, val_every: int):
        self.path, self.val_every = path, val_every

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step >= trainer.max_steps and trainer.global_step % self.val_every:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_validation_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            trainer.save_checkpoint(self.path, weights_only=False)


def train(cfg: TrainConfig, callbacks: list | None = None) -> tuple[Path, dict]:
    """Train (or resume) a run of ``cfg.task``; return the run directory and its final validation metrics.
    ``cfg.qat``: quantization-aware fine-tuning of the model in ``cfg.init`` (``mcq.train.qat``), whose encoder
    replaces ``cfg.backbone``."""
    train_spec(cfg.task)
    whole = clip = None  # --init: an mcq checkpoint of the task (that whole model is fine-tuned), or CLIP weights
    if cfg.qat and cfg.init and not cfg.resume:
        cfg = replace(cfg, backbone=qat_recipe(cfg.init, cfg.task)[0])
    elif cfg.init and not cfg.resume and is_task_checkpoint(cfg.init, cfg.task):
        whole = train_spec(cfg.task).module_of(read_checkpoint(cfg.init, cfg.task))
        model = whole.model.cfg
        cfg = replace(cfg, backbone=model.encoder, head=getattr(model, "head", cfg.head))
    elif cfg.init and not cfg.resume:
        clip = _clip_init(cfg)
    run, created = _prepare_run(cfg)
    try:
        return _train(cfg, run, callbacks or [], whole, clip)
    except BaseException:
        if created and not any((run / "checkpoints").glob("*.ckpt")):
            shutil.rmtree(run, ignore_errors=True)
        raise


def _clip_init(cfg: TrainConfig) -> tuple[LoadReport, dict[str, torch.Tensor]]:
    """The CLIP weights of ``--init`` that fit the encoder's trunk, and the load report: read and checked before
    anything is written (no embedded dataset made, no run directory left for a file that does not fit)."""
    encoder = create_encoder(cfg.backbone)
    report = load_clip_init(encoder, cfg.init, allow_partial=cfg.init_partial)
    state = encoder.trunk.state_dict()
    return report, {k: state[k] for k in report.matched}


def _train(cfg: TrainConfig, run: Path, callbacks: list, whole: TaskModule | None = None,
           clip: tuple[LoadReport, dict[str, torch.Tensor]] | None = None) -> tuple[Path, dict]:
    if cfg.resume:
        saved = json.loads((run / "config.json").read_text())
        cfg = replace(TrainConfig(**saved["train"]), resume=True, out=str(run),
                      devices=cfg.devices, num_nodes=cfg.num_nodes, accelerator=cfg.accelerator)
    spec = train_spec(cfg.task)
    recipe = resolve_recipe(cfg)
    data = Path(cfg.data) if cfg.data else spec.task.default_data()
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    world = cfg.devices * cfg.num_nodes
    train_ds, train_dl, val_dl, steps_per_epoch = spec.loaders(data, recipe, cfg, world)
    recipe = recipe.resolve(steps_per_epoch=steps_per_epoch)
    if cfg.qat:  # --init is the trained model, not a CLIP encoder
        task = qat_task(cfg.init, cfg.task, recipe)
        spec.task.check_eval_data(train_ds, task.hparams, data, cfg.init)
    elif whole is not None:
        task = whole.train()  # every weight and the model's config (an import's too)
        task.hparams.optim = asdict(recipe)
        spec.task.check_eval_data(train_ds, task.hparams, data, cfg.init)
        if is_rank_zero():
            print(f"init {cfg.init}: the whole model ({task.model.cfg.encoder}, an mcq {cfg.task} checkpoint)")
    else:
        task = spec.build(cfg, recipe, train_ds)
        spec.task.check_input_size(task.model, recipe.img_size)
    if clip is not None:
        report, weights = clip
        task.model.encoder.trunk.load_state_dict(weights, strict=False)
        if is_rank_zero():
            print(report.summary())
    if is_rank_zero():
        write_json(run / "config.json", {"train": asdict(cfg), "recipe": asdict(recipe), "data": str(data),
                                         **{k: v for k, v in task.hparams.items() if k != "optim"}})

    val_every = min(recipe.val_every, recipe.max_steps)
    trainer = L.Trainer(
        max_steps=recipe.max_steps,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy="ddp" if world > 1 else "auto",
        sync_batchnorm=world > 1 and _on_gpu(cfg.accelerator),  # SyncBatchNorm is GPU-only
        precision=cfg.precision or default_precision(cfg.accelerator),
        default_root_dir=run,
        logger=CSVLogger(run, name="logs", version=""),
        callbacks=[
            ModelCheckpoint(run / "checkpoints", filename="best", monitor=spec.monitor, mode=spec.mode,
                            enable_version_counter=False),
            _LastCheckpoint(run / "checkpoints" / "last.ckpt", val_every),
            _InterruptedCheckpoint(run / "checkpoints" / "interrupted.ckpt"),
            TQDMProgressBar(refresh_rate=1),
            *([ExactResume(train_dl.sampler, cfg.seed)] if isinstance(train_dl.sampler, ResumableSampler) else []),
            *spec.callbacks(recipe),
            *callbacks,
        ],
        val_check_interval=val_every,
        check_val_every_n_epoch=None,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )
    ckpt = _resume_checkpoint(run) if cfg.resume else None
    trainer.fit(task, train_dl, val_dl, ckpt_path=ckpt, weights_only=True if ckpt else None)
    if task.metrics is None or trainer.global_step % val_every:
        trainer.validate(task, val_dl, verbose=False)
    metrics = {"step": trainer.global_step, **spec.task.describe(task.hparams), "img_size": recipe.img_size,
               **task.metrics}
    if trainer.is_global_zero:
        metrics.update(spec.finish(task, run, trainer))
        write_json(run / "metrics.json", metrics)
    return run, metrics

