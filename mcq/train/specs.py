"""What the one engine (``mcq.train.train``, ``mcq.train.evaluate``) needs to know about training each task.

A ``TrainSpec`` holds the task's definition (``mcq.tasks.specs``: model, datasets, metric table) and adds the
recipe, the loaders, the LightningModule, the metric that picks ``best.ckpt`` and the callbacks; everything else (run
directory, resume, DDP, checkpoints, clean-up of failed runs, progress bar) is shared.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader, Dataset

from mcq.data import ADE20K, COCODetection, ImageFolder
from mcq.data.clip_shards import SampleDecoder, TrainSamples, clip_pipeline, list_shards, parse_captions
from mcq.errors import McqError
from mcq.models.clip_model import clip_model_config, save_openclip_checkpoint
from mcq.models.encoders import encoder_info
from mcq.recipes import Recipe, load_recipe
from mcq.tasks.checkpoint import Trained
from mcq.tasks.specs import TaskSpec, clip_decoder, task_spec
from mcq.train.clip_module import ClipTask
from mcq.train.cls_module import ClsTask
from mcq.train.config import TrainConfig
from mcq.train.depth_module import DepthTask
from mcq.train.det_module import DetTask
from mcq.train.distributed import is_rank_zero
from mcq.train.ema import ema
from mcq.train.module import TaskModule
from mcq.train.sampling import ResumableSampler, Seeded
from mcq.train.seg_module import SegTask


class TrainSpec:
    """Base of the per-task training specs; subclasses fill in the class attributes and ``build``."""

    task: TaskSpec
    module: type[TaskModule]
    monitor: str  # the logged validation metric that selects best.ckpt
    mode: str  # "max" or "min"
    variant: str = ""  # the recipe file is TASK_VARIANT.json (TASK.json without one)

    @property
    def name(self) -> str:
        return self.task.name

    def recipe(self, cfg: TrainConfig) -> Recipe:
        """The shipped recipe this run starts from (before the user's overrides)."""
        if cfg.head:
            raise McqError(f"--head is for seg; {self.name} has a single head")
        if cfg.linear_probe:
            raise McqError("--linear-probe is for cls")
        if cfg.freeze_encoder:
            raise McqError(f"--freeze-encoder is for seg; {self.name} has --linear-probe (cls) or trains it all")
        return load_recipe(self.name, self.variant)

    def loaders(self, data: Path, recipe: Recipe, cfg: TrainConfig,
                world: int) -> tuple[Dataset, DataLoader, DataLoader, int]:
        """The training set, the loaders for one process and the number of steps in an epoch: the recipe's batch is
        the global batch, split evenly across ``world`` processes."""
        if recipe.batch_size % world:
            raise McqError(f"--batch-size {recipe.batch_size} does not split evenly across {world} processes")
        per_process = recipe.batch_size // world
        train_ds = self.task.train_set(data, recipe, cfg.backbone)
        val_ds = self.task.val_set(data, recipe.img_size, cfg.backbone)
        if len(train_ds) < recipe.batch_size:
            raise McqError(f"{data}: {len(train_ds)} training images, fewer than one batch of {recipe.batch_size}; "
                           "lower --batch-size")
        kw = dict(num_workers=cfg.workers, persistent_workers=cfg.workers > 0, collate_fn=self.task.collate)
        order = ResumableSampler(train_ds, per_process, cfg.seed)  # what a resumed run continues exactly
        return (
            train_ds,
            DataLoader(Seeded(train_ds), per_process, sampler=order, drop_last=True, **kw),
            DataLoader(val_ds, max(1, per_process // 2), shuffle=False, **kw),
            len(train_ds) // recipe.batch_size,
        )

    def build(self, cfg: TrainConfig, recipe: Recipe, train_set: Dataset) -> TaskModule:
        """A fresh module for this run (random init; ``--init`` is loaded by the engine)."""
        raise NotImplementedError

    def model_name(self, cfg: TrainConfig) -> str:
        """What names the run's default directory (``runs/TASK-NAME``)."""
        return cfg.backbone

    def finish(self, task: TaskModule, run: Path, trainer: L.Trainer) -> dict:
        """Write what a finished run adds to its directory (rank zero, after the last validation); return what
        ``metrics.json`` should say about it."""
        return {}

    def callbacks(self, recipe: Recipe) -> list[L.Callback]:
        """Training callbacks the recipe asks for (e.g. an EMA of the weights)."""
        return []

    def eval_loader(self, task: TaskModule, data: Path, img_size: int, batch_size: int, workers: int,
                    checkpoint: str | Path) -> DataLoader:
        """The validation split of ``data`` for ``task`` at ``img_size``, checked against the checkpoint; ``task``
        is set up to be evaluated at that size."""
        self.task.check_input_size(task.model, img_size)
        ds = self.task.val_set(data, img_size, task.model.cfg.encoder)
        self.task.check_eval_data(ds, task.hparams, data, checkpoint)
        self.task.prepare_eval(task.model, img_size)
        return DataLoader(ds, batch_size, num_workers=workers, collate_fn=self.task.collate)

    def module_of(self, trained: Trained) -> TaskModule:
        """The LightningModule of a trained model (its weights, its hyper-parameters)."""
        params = inspect.signature(self.module).parameters
        module = self.module(**{k: trained.hparams[k] for k in params if k in trained.hparams})
        module.model = trained.model
        if trained.qat is not None:
            module.hparams.qat, module.qat = trained.hparams["qat"], trained.qat
        return module.eval()


class SegTrain(TrainSpec):
    task, module = task_spec("seg"), SegTask
    monitor, mode = "val/mIoU", "max"

    def recipe(self, cfg: TrainConfig) -> Recipe:
        if cfg.linear_probe:
            raise McqError("--linear-probe is for cls")
        return load_recipe("seg", cfg.head or encoder_info(cfg.backbone).default_head)

    def build(self, cfg: TrainConfig, recipe: Recipe, train_set: ADE20K) -> SegTask:
        model = dict(encoder=cfg.backbone, num_classes=train_set.num_classes, head=recipe.head,
                     drop_path=recipe.drop_path, freeze_encoder=cfg.freeze_encoder)
        return SegTask(model=model, class_names=train_set.class_names, optim=asdict(recipe))

    def loaders(self, data: Path, recipe: Recipe, cfg: TrainConfig,
                world: int) -> tuple[Dataset, DataLoader, DataLoader, int]:
        if recipe.head == "upernet" and recipe.batch_size < 2 * world:
            raise McqError(f"--batch-size {recipe.batch_size} over {world} process(es): UperNet's pyramid pooling "
                           "batch-normalises a 1x1 map, which needs 2 or more images per process; raise --batch-size")
        return super().loaders(data, recipe, cfg, world)


class DepthTrain(TrainSpec):
    task, module = task_spec("depth"), DepthTask
    monitor, mode = "val/rmse", "min"

    def build(self, cfg: TrainConfig, recipe: Recipe, train_set: Dataset) -> DepthTask:
        model = dict(encoder=cfg.backbone, max_depth=recipe.max_depth, drop_path=recipe.drop_path)
        return DepthTask(model=model, optim=asdict(recipe))


class ClsTrain(TrainSpec):
    task, module = task_spec("cls"), ClsTask
    monitor, mode = "val/top1", "max"

    def recipe(self, cfg: TrainConfig) -> Recipe:
        if cfg.head:
            raise McqError("--head is for seg; cls has a single linear layer")
        if cfg.freeze_encoder:
            raise McqError("--freeze-encoder is for seg; cls freezes its encoder with --linear-probe")
        return load_recipe("cls", "linear_probe" if cfg.linear_probe else "finetune")

    def build(self, cfg: TrainConfig, recipe: Recipe, train_set: ImageFolder) -> ClsTask:
        model = dict(encoder=cfg.backbone, num_classes=train_set.num_classes, linear_probe=recipe.linear_probe,
                     drop_path=recipe.drop_path)
        return ClsTask(model=model, class_names=train_set.classes, optim=asdict(recipe))

    def callbacks(self, recipe: Recipe) -> list[L.Callback]:
        return [ema(recipe.ema)] if recipe.ema else []


class DetTrain(TrainSpec):
    task, module, variant = task_spec("det"), DetTask, "maskrcnn"
    monitor, mode = "val/bbox_AP", "max"

    def build(self, cfg: TrainConfig, recipe: Recipe, train_set: COCODetection) -> DetTask:
        model = dict(encoder=cfg.backbone, num_classes=train_set.num_classes, img_size=recipe.img_size,
                     drop_path=recipe.drop_path, fpn_channels=recipe.fpn_channels, roi_batch_size=recipe.roi_batch_size)
        return DetTask(model=model, class_names=train_set.class_names, category_ids=train_set.category_ids,
                       optim=asdict(recipe))


class ClipTrain(TrainSpec):
    """CLIP pretraining on image-text shards (DataCompDR layout); see ``mcq.train.clip_module``."""

    task, module = task_spec("clip"), ClipTask
    monitor, mode = "val/R@1", "max"
    val_fallback = 512  # without --val-data: recall on this many training samples

    def recipe(self, cfg: TrainConfig) -> Recipe:
        for flag, given in (("--head", cfg.head), ("--linear-probe", cfg.linear_probe), ("--init", cfg.init),
                            ("--freeze-encoder", cfg.freeze_encoder)):
            if given:
                raise McqError(f"{flag} is not for clip (CLIP runs start from random weights; --model picks the "
                               "architecture)")
        return load_recipe("clip")

    def model_name(self, cfg: TrainConfig) -> str:
        return cfg.model or self.task.default_model

    def model_config(self, cfg: TrainConfig, recipe: Recipe) -> dict:
        return clip_model_config(self.model_name(cfg), cfg.text_width, cfg.text_layers, recipe.context_length)

    def loaders(self, data: Path, recipe: Recipe, cfg: TrainConfig,
                world: int) -> tuple[TrainSamples, DataLoader, DataLoader, int]:
        """Streaming loaders over the shards; ``data`` (or a ``train/`` folder in it) holds the training shards,
        ``--val-data`` (or ``data/val/``) the validation ones. The training set is the stream's first stage
        (``TrainSamples``), which a resumed run's module fast-forwards."""
        if recipe.batch_size % world:
            raise McqError(f"--batch-size {recipe.batch_size} does not split evenly across {world} processes")
        folder = Path(str(data))
        train = list_shards(str(folder / "train") if (folder / "train").is_dir() else str(data))
        val_spec = cfg.val_data or (str(folder / "val") if (folder / "val").is_dir() else None)
        if len(train) < world:
            raise McqError(f"{data}: {len(train)} training shards for {world} processes; each needs at least one")
        workers = min(cfg.workers, len(train) // world)  # every worker needs a shard of its own
        per_process = recipe.batch_size // world

        def decode(train: bool) -> SampleDecoder:
            return clip_decoder(self.model_name(cfg), self.model_config(cfg, recipe), recipe.img_size,
                                recipe.context_length, parse_captions(cfg.captions), cfg.distill, train,
                                recipe.crop_scale)

        stream = TrainSamples(train, cfg.seed, recipe.shuffle_buffer)
        train_pipe = clip_pipeline(stream, decode(True), per_process)
        if val_spec:
            val = list_shards(val_spec)
            val_pipe = clip_pipeline(val, decode(False), per_process)
        else:
            val = train
            val_pipe = clip_pipeline(train, decode(False), per_process, limit=self.val_fallback)
            if is_rank_zero():
                print(f"no --val-data: recall is measured on the first {self.val_fallback} training samples")
        kw = dict(batch_size=None, persistent_workers=False)
        return (stream, DataLoader(train_pipe, num_workers=workers, **kw),
                DataLoader(val_pipe, num_workers=min(cfg.workers, len(val)), **kw), 0)

    def build(self, cfg: TrainConfig, recipe: Recipe, train_set: TrainSamples) -> ClipTask:
        model = dict(name=self.model_name(cfg), cfg=self.model_config(cfg, recipe), img_size=recipe.img_size,
                     captions=list(parse_captions(cfg.captions)), distill=cfg.distill)
        task = ClipTask(model=model, optim=asdict(recipe))
        task.stream = train_set
        return task

    def callbacks(self, recipe: Recipe) -> list[L.Callback]:
        return [ema(recipe.ema)] if recipe.ema else []

    def eval_loader(self, task: ClipTask, data: Path, img_size: int, batch_size: int, workers: int,
                    checkpoint: str | Path) -> DataLoader:
        """One pass over the shards ``data`` (or its ``val/`` folder), scoring the caption kinds in
        ``task.captions``."""
        self.task.check_input_size(task.model, img_size)
        shards = list_shards(str(data / "val") if (data / "val").is_dir() else str(data))
        m, o = task.hparams.model, task.hparams.optim
        decoder = clip_decoder(m["name"], m["cfg"], img_size, o["context_length"], task.captions, False, False)
        return DataLoader(clip_pipeline(shards, decoder, batch_size), batch_size=None,
                          num_workers=min(workers, len(shards)))

    def finish(self, task: ClipTask, run: Path, trainer: L.Trainer) -> dict:
        """The model (the EMA weights when the recipe keeps one) in open_clip's checkpoint layout, which
        ``--init`` reads: ``checkpoints/openclip.pt`` and ``checkpoints/open_clip_config.json``."""
        m = task.hparams.model
        path = save_openclip_checkpoint(task.model, run / "checkpoints" / "openclip.pt", run.name,
                                        trainer.current_epoch, m["cfg"], m["img_size"])
        return {"openclip_checkpoint": str(path)}


TRAIN_SPECS: dict[str, TrainSpec] = {s.name: s for s in (SegTrain(), DepthTrain(), ClsTrain(), DetTrain(), ClipTrain())}


def train_spec(name: str) -> TrainSpec:
    task_spec(name)  # the one-line error for an unknown task
    return TRAIN_SPECS[name]
