"""What the one engine (``mcq.engine.train``, ``mcq.engine.evaluate``) needs to know about each task.

A ``TaskSpec`` names the recipe, the datasets and their collate function, the LightningModule, the metric that picks
``best.ckpt`` and the table ``mcq`` prints; everything else (run directory, resume, DDP, checkpoints, clean-up of
failed runs, progress bar) is shared.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import lightning as L
import open_clip
from torch.utils.data import DataLoader, Dataset

from mcq.data import (
    ADE20K, ClsTransform, COCODetection, DepthTransform, DetTransform, ImageFolder, NYUv2, SegTransform, collate_det,
    collate_seg, default_cls_data, default_depth_data, default_det_data, default_seg_data,
)
from mcq.data.clip_shards import SampleDecoder, TrainSamples, clip_pipeline, list_shards, parse_captions
from mcq.data.paug import PaugReplay
from mcq.data.synth_clip import default_clip_data
from mcq.engine.clip_module import ClipTask
from mcq.engine.cls_module import ClsTask
from mcq.engine.depth_module import DepthTask
from mcq.engine.det_module import DetTask
from mcq.engine.ema import ema
from mcq.engine.metrics import (
    format_clip_table, format_cls_table, format_depth_table, format_det_table, format_seg_table,
)
from mcq.engine.module import TaskModule
from mcq.engine.seg_module import SegTask
from mcq.errors import McqError
from mcq.models.clip_model import clip_model_config, save_openclip_checkpoint, tokenizer_for
from mcq.models.encoders import encoder_info, normalization
from mcq.recipes import Recipe, load_recipe

if TYPE_CHECKING:
    from mcq.engine.train import TrainConfig


class TaskSpec:
    """Base of the per-task specs; subclasses fill in the class attributes and the dataset/module builders."""

    name: str
    title: str  # what a checkpoint of this task is called in messages
    module: type[TaskModule]
    dataset: Callable[..., Dataset]  # dataset(root, split, transform)
    splits: tuple[str, str]  # (training, validation) split names in the dataset's layout
    transform: Callable  # transform(img_size, train, mean, std, crop_scale, crop_ratio)
    monitor: str  # the logged validation metric that selects best.ckpt
    mode: str  # "max" or "min"
    collate: Callable | None = None
    default_data: Callable[[], Path]
    format_table: Callable[[dict], str]
    variant: str = ""  # the recipe file is TASK_VARIANT.json (TASK.json without one)

    def recipe(self, cfg: "TrainConfig") -> Recipe:
        """The shipped recipe this run starts from (before the user's overrides)."""
        if cfg.head:
            raise McqError(f"--head is for seg; {self.name} has a single head")
        if cfg.linear_probe:
            raise McqError("--linear-probe is for cls")
        if cfg.freeze_encoder:
            raise McqError(f"--freeze-encoder is for seg; {self.name} has --linear-probe (cls) or trains it all")
        return load_recipe(self.name, self.variant)

    def train_set(self, data: Path, recipe: Recipe, backbone: str) -> Dataset:
        transform = self.transform(recipe.img_size, True, *normalization(backbone), recipe.crop_scale, recipe.crop_ratio)
        return self.dataset(data, self.splits[0], transform)

    def loaders(self, data: Path, recipe: Recipe, cfg: "TrainConfig",
                world: int) -> tuple[Dataset, DataLoader, DataLoader, int]:
        """The training set, the loaders for one process and the number of steps in an epoch: the recipe's batch is
        the global batch, split evenly across ``world`` processes."""
        if recipe.batch_size % world:
            raise McqError(f"--batch-size {recipe.batch_size} does not split evenly across {world} processes")
        per_process = recipe.batch_size // world
        train_ds = self.train_set(data, recipe, cfg.backbone)
        val_ds = self.val_set(data, recipe.img_size, cfg.backbone)
        if len(train_ds) < recipe.batch_size:
            raise McqError(f"{data}: {len(train_ds)} training images, fewer than one batch of {recipe.batch_size}; "
                           "lower --batch-size")
        kw = dict(num_workers=cfg.workers, persistent_workers=cfg.workers > 0, collate_fn=self.collate)
        return (
            train_ds,
            DataLoader(train_ds, per_process, shuffle=True, drop_last=True, **kw),
            DataLoader(val_ds, max(1, per_process // 2), shuffle=False, **kw),
            len(train_ds) // recipe.batch_size,
        )

    def val_set(self, data: Path, img_size: int, backbone: str) -> Dataset:
        return self.eval_set(data, self.splits[1], img_size, backbone)

    def eval_set(self, data: Path, split: str, img_size: int, backbone: str) -> Dataset:
        """``split`` of ``data`` with the evaluation transform (no augmentation)."""
        return self.dataset(data, split, self.transform(img_size, False, *normalization(backbone)))

    def build(self, cfg: "TrainConfig", recipe: Recipe, train_set: Dataset) -> TaskModule:
        """A fresh module for this run (random init; ``--init`` is loaded by the engine)."""
        raise NotImplementedError

    def model_name(self, cfg: "TrainConfig") -> str:
        """What names the run's default directory (``runs/TASK-NAME``)."""
        return cfg.backbone

    def check_input_size(self, task: TaskModule, img_size: int) -> None:
        """Refuse a training size the model cannot take."""
        task.model.encoder.check_input_size(img_size, img_size)

    def finish(self, task: TaskModule, run: Path, trainer: L.Trainer) -> dict:
        """Write what a finished run adds to its directory (rank zero, after the last validation); return what
        ``metrics.json`` should say about it."""
        return {}

    def check_eval_data(self, val_set: Dataset, task: TaskModule, data: Path, checkpoint: str | Path) -> None:
        """Refuse evaluation data the checkpoint cannot be scored on (e.g. other classes)."""

    def callbacks(self, recipe: Recipe) -> list[L.Callback]:
        """Training callbacks the recipe asks for (e.g. an EMA of the weights)."""
        return []

    def eval_loader(self, task: TaskModule, data: Path, img_size: int, batch_size: int, workers: int,
                    checkpoint: str | Path) -> DataLoader:
        """The validation split of ``data`` for ``task`` at ``img_size``, checked against the checkpoint; ``task``
        is set up to be evaluated at that size."""
        task.model.encoder.check_input_size(img_size, img_size)
        ds = self.val_set(data, img_size, task.model.cfg.encoder)
        self.check_eval_data(ds, task, data, checkpoint)
        self.prepare_eval(task, img_size)
        return DataLoader(ds, batch_size, num_workers=workers, collate_fn=self.collate)

    def prepare_eval(self, task: TaskModule, img_size: int) -> None:
        """Set up ``task`` to be evaluated at ``img_size`` (for models that resize their input themselves)."""

    def describe(self, task: TaskModule) -> dict:
        """The model's identity, as reported in metrics.json."""
        return {"encoder": task.model.cfg.encoder}


class SegSpec(TaskSpec):
    name, title, module = "seg", "segmentation", SegTask
    dataset, splits, transform = ADE20K, ("training", "validation"), SegTransform
    monitor, mode = "val/mIoU", "max"
    collate = staticmethod(collate_seg)
    default_data = staticmethod(default_seg_data)
    format_table = staticmethod(format_seg_table)

    def recipe(self, cfg: "TrainConfig") -> Recipe:
        if cfg.linear_probe:
            raise McqError("--linear-probe is for cls")
        return load_recipe("seg", cfg.head or encoder_info(cfg.backbone).default_head)

    def build(self, cfg: "TrainConfig", recipe: Recipe, train_set: ADE20K) -> SegTask:
        model = dict(encoder=cfg.backbone, num_classes=train_set.num_classes, head=recipe.head, drop_path=recipe.drop_path,
                     freeze_encoder=cfg.freeze_encoder)
        return SegTask(model=model, class_names=train_set.class_names, optim=asdict(recipe))

    def loaders(self, data: Path, recipe: Recipe, cfg: "TrainConfig",
                world: int) -> tuple[Dataset, DataLoader, DataLoader, int]:
        if recipe.head == "upernet" and recipe.batch_size < 2 * world:
            raise McqError(f"--batch-size {recipe.batch_size} over {world} process(es): UperNet's pyramid pooling "
                           "batch-normalises a 1x1 map, which needs 2 or more images per process; raise --batch-size")
        return super().loaders(data, recipe, cfg, world)

    def check_eval_data(self, val_set: ADE20K, task: SegTask, data: Path, checkpoint: str | Path) -> None:
        check_classes(val_set.class_names, task.class_names, data, checkpoint, "the same objectInfo150.txt")

    def describe(self, task: SegTask) -> dict:
        return {"encoder": task.model.cfg.encoder, "head": task.model.cfg.head}


class DepthSpec(TaskSpec):
    name, title, module = "depth", "depth", DepthTask
    dataset, splits, transform = NYUv2, ("train", "test"), DepthTransform
    monitor, mode = "val/rmse", "min"
    collate = staticmethod(collate_seg)  # depth maps stay a list: test frames keep their own size
    default_data = staticmethod(default_depth_data)
    format_table = staticmethod(format_depth_table)

    def eval_set(self, data: Path, split: str, img_size: int, backbone: str) -> Dataset:
        """Frames resized to ``img_size`` high and NYUv2's 4:3 wide, the width a multiple of 64 (every
        encoder's stride; 480 -> 480x640, NYUv2's own size)."""
        width = max(64, round(img_size * 4 / 3 / 64) * 64)
        return NYUv2(data, split, DepthTransform(img_size, False, *normalization(backbone), val_size=(img_size, width)))

    def build(self, cfg: "TrainConfig", recipe: Recipe, train_set: Dataset) -> DepthTask:
        model = dict(encoder=cfg.backbone, max_depth=recipe.max_depth, drop_path=recipe.drop_path)
        return DepthTask(model=model, optim=asdict(recipe))


class ClsSpec(TaskSpec):
    name, title, module = "cls", "classification", ClsTask
    dataset, splits, transform = ImageFolder, ("train", "val"), ClsTransform
    monitor, mode = "val/top1", "max"
    default_data = staticmethod(default_cls_data)
    format_table = staticmethod(format_cls_table)

    def recipe(self, cfg: "TrainConfig") -> Recipe:
        if cfg.head:
            raise McqError("--head is for seg; cls has a single linear layer")
        if cfg.freeze_encoder:
            raise McqError("--freeze-encoder is for seg; cls freezes its encoder with --linear-probe")
        return load_recipe("cls", "linear_probe" if cfg.linear_probe else "finetune")

    def build(self, cfg: "TrainConfig", recipe: Recipe, train_set: ImageFolder) -> ClsTask:
        model = dict(encoder=cfg.backbone, num_classes=train_set.num_classes, linear_probe=recipe.linear_probe,
                     drop_path=recipe.drop_path)
        return ClsTask(model=model, class_names=train_set.classes, optim=asdict(recipe))

    def callbacks(self, recipe: Recipe) -> list[L.Callback]:
        return [ema(recipe.ema)] if recipe.ema else []

    def check_eval_data(self, val_set: ImageFolder, task: ClsTask, data: Path, checkpoint: str | Path) -> None:
        check_classes(val_set.classes, task.class_names, data, checkpoint, "the same class folders")

    def describe(self, task: ClsTask) -> dict:
        return {"encoder": task.model.cfg.encoder, "linear_probe": task.model.cfg.linear_probe}


class DetSpec(TaskSpec):
    name, title, module, variant = "det", "detection", DetTask, "maskrcnn"
    dataset, splits = COCODetection, ("train", "val")
    monitor, mode = "val/bbox_AP", "max"
    collate = staticmethod(collate_det)
    default_data = staticmethod(default_det_data)
    format_table = staticmethod(format_det_table)

    def train_set(self, data: Path, recipe: Recipe, backbone: str) -> COCODetection:
        return COCODetection(data, "train", DetTransform(recipe.img_size, True, recipe.crop_scale))

    def eval_set(self, data: Path, split: str, img_size: int, backbone: str) -> COCODetection:
        """Images at their own size: the model resizes them and answers in their pixels, as COCOeval wants."""
        return COCODetection(data, split, DetTransform(img_size, False))

    def build(self, cfg: "TrainConfig", recipe: Recipe, train_set: COCODetection) -> DetTask:
        model = dict(encoder=cfg.backbone, num_classes=train_set.num_classes, img_size=recipe.img_size,
                     drop_path=recipe.drop_path, fpn_channels=recipe.fpn_channels, roi_batch_size=recipe.roi_batch_size)
        return DetTask(model=model, class_names=train_set.class_names, category_ids=train_set.category_ids,
                       optim=asdict(recipe))

    def check_eval_data(self, val_set: COCODetection, task: DetTask, data: Path, checkpoint: str | Path) -> None:
        if val_set.category_ids != task.category_ids:
            raise McqError(f"{val_set.annotation_file}: categories {val_set.category_ids[:8]}"
                           f"{'...' if len(val_set.category_ids) > 8 else ''} differ from the {len(task.category_ids)} "
                           f"{checkpoint} was trained on; evaluate on a dataset with the same categories")

    def prepare_eval(self, task: DetTask, img_size: int) -> None:
        task.model.set_img_size(img_size)


class ClipSpec(TaskSpec):
    """CLIP pretraining on image-text shards (DataCompDR layout); see ``mcq.engine.clip_module``."""

    name, title, module = "clip", "CLIP", ClipTask
    monitor, mode = "val/R@1", "max"
    default_data = staticmethod(default_clip_data)
    format_table = staticmethod(format_clip_table)
    default_model = "MobileCLIP2-S0"
    val_fallback = 512  # without --val-data: recall on this many training samples

    def recipe(self, cfg: "TrainConfig") -> Recipe:
        for flag, given in (("--head", cfg.head), ("--linear-probe", cfg.linear_probe), ("--init", cfg.init),
                            ("--freeze-encoder", cfg.freeze_encoder)):
            if given:
                raise McqError(f"{flag} is not for clip (CLIP runs start from random weights; --model picks the "
                               "architecture)")
        return load_recipe("clip")

    def model_name(self, cfg: "TrainConfig") -> str:
        return cfg.model or self.default_model

    def model_config(self, cfg: "TrainConfig", recipe: Recipe) -> dict:
        return clip_model_config(self.model_name(cfg), cfg.text_width, cfg.text_layers, recipe.context_length)

    def loaders(self, data: Path, recipe: Recipe, cfg: "TrainConfig",
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
            if _rank_zero():
                print(f"no --val-data: recall is measured on the first {self.val_fallback} training samples")
        kw = dict(batch_size=None, persistent_workers=False)
        return (stream, DataLoader(train_pipe, num_workers=workers, **kw),
                DataLoader(val_pipe, num_workers=min(cfg.workers, len(val)), **kw), 0)

    def build(self, cfg: "TrainConfig", recipe: Recipe, train_set: TrainSamples) -> ClipTask:
        model = dict(name=self.model_name(cfg), cfg=self.model_config(cfg, recipe), img_size=recipe.img_size,
                     captions=list(parse_captions(cfg.captions)), distill=cfg.distill)
        task = ClipTask(model=model, optim=asdict(recipe))
        task.stream = train_set
        return task

    def check_input_size(self, task: ClipTask, img_size: int) -> None:
        if img_size % 32:
            raise McqError(f"--img-size {img_size}: use a multiple of 32 (e.g. {max(32, round(img_size / 32) * 32)})")

    def callbacks(self, recipe: Recipe) -> list[L.Callback]:
        return [ema(recipe.ema)] if recipe.ema else []

    def eval_loader(self, task: ClipTask, data: Path, img_size: int, batch_size: int, workers: int,
                    checkpoint: str | Path) -> DataLoader:
        """One pass over the shards ``data`` (or its ``val/`` folder), scoring the caption kinds in
        ``task.captions``."""
        self.check_input_size(task, img_size)
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

    def describe(self, task: ClipTask) -> dict:
        m = task.hparams.model
        return {"model": m["name"], "captions": m["captions"], "distill": m["distill"]}


def _rank_zero() -> bool:
    from mcq.engine.train import _is_rank_zero

    return _is_rank_zero()


def clip_decoder(name: str, model_cfg: dict, img_size: int, context_length: int, captions: tuple[str, ...],
                 teacher: bool, train: bool, crop_scale: list[float] | None = None) -> SampleDecoder:
    """Shard samples -> model inputs for the CLIP model ``name`` (``model_cfg``): open_clip's image transform (with
    the random crop of ``crop_scale`` when training; its aspect range 3/4..4/3 is the recipe's) and tokenizer.
    Training with a ``teacher``: the stored augmentation (``paug.json``) of the teacher embedding used is replayed
    instead of a random crop."""
    mean, std = clip_normalization(model_cfg)
    aug = dict(scale=tuple(crop_scale)) if train else None
    transform = open_clip.image_transform(img_size, train, mean, std, aug_cfg=aug)
    replay = PaugReplay(img_size, mean, std) if teacher and train else None
    return SampleDecoder(transform, tokenizer_for(name, context_length), captions, teacher, train, replay=replay)


def clip_normalization(model_cfg: dict) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Input mean/std of a CLIP image tower: its timm trunk's (as the mcq encoder it initialises uses), else
    OpenAI CLIP's."""
    import timm

    name = model_cfg["vision_cfg"].get("timm_model_name")
    if name:
        pre = timm.models.get_pretrained_cfg(name)
        if pre is not None:
            return tuple(map(float, pre.mean)), tuple(map(float, pre.std))
    return tuple(open_clip.OPENAI_DATASET_MEAN), tuple(open_clip.OPENAI_DATASET_STD)


def check_classes(found: list[str], trained: list[str], data: Path, model: str | Path, hint: str) -> None:
    """A one-line error unless ``data`` has as many classes as ``model`` was trained on."""
    if len(found) != len(trained):
        raise McqError(f"{data}: {len(found)} classes, but {model} was trained on {len(trained)}; "
                       f"evaluate on a dataset with {hint}")


TASKS: dict[str, TaskSpec] = {s.name: s for s in (SegSpec(), DepthSpec(), ClsSpec(), DetSpec(), ClipSpec())}


def task_spec(name: str) -> TaskSpec:
    if name not in TASKS:
        raise McqError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]
