"""What each task is, apart from how it is trained: its model (built from a checkpoint's hyper-parameters), its
datasets and their transforms, its metric table and the checks of evaluation data. Export, runtimes and profiling
use these; the Lightning side (modules, recipes, loaders, callbacks) is ``mcq.train.specs``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms import v2

from mcq.data import (
    ADE20K, ClsTransform, COCODetection, DepthTransform, DetTransform, ImageFolder, NYUv2, SegTransform, collate_det,
    collate_seg, default_cls_data, default_depth_data, default_det_data, default_seg_data,
)
from mcq.data.clip_shards import SampleDecoder
from mcq.data.paug import PaugReplay
from mcq.data.synth_clip import default_clip_data
from mcq.errors import McqError
from mcq.models.classifier import ClsModel, ClsModelConfig
from mcq.models.clip_model import create_clip_model, tokenizer_for
from mcq.models.depth import DepthModel, DepthModelConfig
from mcq.models.detector import DetModel, DetModelConfig
from mcq.models.encoders import normalization
from mcq.models.segmentor import SegModel, SegModelConfig
from mcq.recipes import Recipe
from mcq.tasks import detection
from mcq.tasks.classmaps import labels_at
from mcq.tasks.metrics import (
    format_clip_table, format_cls_table, format_depth_table, format_det_table, format_seg_table,
)
from mcq.tasks.parity import Run, det_parity, first_output, output_parity


class TaskSpec:
    """Base of the per-task definitions; subclasses fill in the class attributes and ``build_model``."""

    name: str
    title: str  # what a checkpoint of this task is called in messages
    hparams: tuple[str, ...] = ("model", "optim")  # what a checkpoint's hyper-parameters must hold
    dataset: Callable[..., Dataset]  # dataset(root, split, transform)
    splits: tuple[str, str]  # (training, validation) split names in the dataset's layout
    transform: Callable  # transform(img_size, train, mean, std, crop_scale, crop_ratio)
    collate: Callable | None = None
    default_data: Callable[[], Path]
    format_table: Callable[[dict], str]
    qat: bool = False  # whether quantization-aware training (``mcq train --qat``) is offered
    precisions: tuple[str, ...] | None = None  # what its artifacts export in (None: each format's precisions)
    exported: bool = True  # whether its models are exported (and profiled)
    explained: bool = True  # whether ``mcq export --explain`` diagnoses its artifacts
    error_maps: bool = False  # whether that diagnosis draws where the artifact's class map differs from PyTorch's
    artifact_accuracy: bool = False  # whether an export measures each artifact's accuracy against the checkpoint's
    labels: bool = False  # whether its artifacts can return class indices (``mcq export --outputs labels``)
    parity_thresholds: dict[str, dict[str, float]] = {}  # per precision, what an artifact's parity check must meet
    parity_measure = "agreement"  # what ``parity`` measures besides the max error (``mcq.tasks.parity``)
    # the headline figure of its `mcq eval --json`: (key path, metric name, scale to report), None for CLIP
    headline: tuple[tuple[str, ...], str, float] | None = None
    reference_name: str | None = None  # what reports call its reference graph, where it has several (det)
    image_text = False  # whether it learns from image-text shards (CLIP): --captions and the CLIP options apply

    def build_model(self, model: dict) -> nn.Module:
        """A model of the config ``model`` (a checkpoint's ``hyper_parameters["model"]``), randomly initialised."""
        raise NotImplementedError

    def artifact_kind(self, meta: dict) -> str:
        """What an artifact's file name calls the model after its encoder."""
        return self.name

    def reference_graph(self, model: nn.Module) -> nn.Module:
        """The module in PyTorch that every artifact of ``model`` is checked against and that profiles time as
        ``torch``."""
        return model

    def artifact_graph(self, fmt: str, model: nn.Module, meta: dict) -> tuple[nn.Module, nn.Module, dict]:
        """The module a ``fmt`` artifact holds, the module its parity check compares it with, and its metadata."""
        return model, self.reference_graph(model), meta

    def artifact_run(self, run_all: Callable | None, model: nn.Module, meta: dict) -> Callable | None:
        """What an artifact's check compares, from its runtime's ``run_all`` (None where it cannot run here)."""
        return first_output(run_all)

    def parity(self, run: Run, model: nn.Module, images: torch.Tensor, precision: str) -> dict:
        """``run`` (an artifact, one image at a time) against ``model`` (its reference graph) on ``images``, judged
        by the thresholds of ``precision``."""
        return output_parity(run, model, images, precision, self.parity_thresholds, self.parity_measure)

    def train_set(self, data: Path, recipe: Recipe, backbone: str) -> Dataset:
        transform = self.transform(recipe.img_size, True, *normalization(backbone), recipe.crop_scale,
                                   recipe.crop_ratio)
        return self.dataset(data, self.splits[0], transform)

    def val_set(self, data: Path, img_size: int, backbone: str) -> Dataset:
        return self.eval_set(data, self.splits[1], img_size, backbone)

    def eval_set(self, data: Path, split: str, img_size: int, backbone: str) -> Dataset:
        """``split`` of ``data`` with the evaluation transform (no augmentation)."""
        return self.dataset(data, split, self.transform(img_size, False, *normalization(backbone)))

    def app_steps(self, model: nn.Module, image: Image.Image, size: int, data: Path,
                  input_hw: tuple[int, int]) -> tuple[Callable[[], object], Callable[[list, str], object]]:
        """What an app does around ``model`` (an inference form) for the decoded ``image``: its pre-processing (the
        image -> the model's input at ``size``, ``input_hw`` high and wide) and its post-processing (one run's
        outputs, and the artifact's det graph or "" -> the answer)."""
        transform = self.eval_set(data, self.splits[1], size, model.cfg.encoder).transform
        return lambda: transform.image_only(image), lambda outs, graph: self.answer(outs, image.height, image.width)

    def answer(self, outputs: list, height: int, width: int) -> object:
        """A run's outputs as an app shows them for an image of ``height`` x ``width``."""
        raise NotImplementedError

    def check_input_size(self, model: nn.Module, img_size: int) -> None:
        """Refuse a size the model cannot take."""
        model.encoder.check_input_size(img_size, img_size)

    def check_eval_data(self, val_set: Dataset, hparams: dict, data: Path, checkpoint: str | Path) -> None:
        """Refuse evaluation data the checkpoint (its ``hparams``) cannot be scored on (e.g. other classes)."""

    def prepare_eval(self, model: nn.Module, img_size: int) -> None:
        """Set up ``model`` to be evaluated at ``img_size`` (for models that resize their input themselves)."""

    def describe(self, hparams: dict) -> dict:
        """The model's identity, as reported in metrics.json."""
        return {"encoder": hparams["model"]["encoder"]}


class SegSpec(TaskSpec):
    name, title, hparams = "seg", "segmentation", ("model", "class_names", "optim")
    dataset, splits, transform = ADE20K, ("training", "validation"), SegTransform
    collate = staticmethod(collate_seg)
    default_data = staticmethod(default_seg_data)
    format_table = staticmethod(format_seg_table)
    qat, artifact_accuracy, error_maps, labels = True, True, True, True
    headline = ("mIoU",), "mIoU", 100
    parity_thresholds = {"fp32": {"agreement": 0.999, "max_rel": 1e-3}, "fp16": {"agreement": 0.99},
                         "int8": {"agreement": 0.99}}

    def build_model(self, model: dict) -> SegModel:
        return SegModel(SegModelConfig(**model))

    def artifact_kind(self, meta: dict) -> str:
        return meta["head"]

    def answer(self, outputs: list, height: int, width: int) -> np.ndarray:
        """Class indices at the image's size: logits upsampled (bilinear) and argmax, or a labels model's output
        resized (nearest)."""
        return labels_at(np.asarray(outputs[0]), height, width)

    def check_eval_data(self, val_set: ADE20K, hparams: dict, data: Path, checkpoint: str | Path) -> None:
        check_classes(val_set.class_names, hparams["class_names"], data, checkpoint, "the same objectInfo150.txt")

    def describe(self, hparams: dict) -> dict:
        return {"encoder": hparams["model"]["encoder"], "head": hparams["model"]["head"]}


class DepthSpec(TaskSpec):
    name, title = "depth", "depth"
    dataset, splits, transform = NYUv2, ("train", "test"), DepthTransform
    collate = staticmethod(collate_seg)  # depth maps stay a list: test frames keep their own size
    default_data = staticmethod(default_depth_data)
    format_table = staticmethod(format_depth_table)
    parity_thresholds = {"fp32": {"mean_rel": 1e-4, "max_rel": 1e-3}, "fp16": {"mean_rel": 1e-2},
                         "int8": {"mean_rel": 5e-2}}
    parity_measure = "mean_rel"
    headline = ("rmse",), "RMSE m", 1

    def build_model(self, model: dict) -> DepthModel:
        return DepthModel(DepthModelConfig(**model))

    def answer(self, outputs: list, height: int, width: int) -> torch.Tensor:
        """The depth map upsampled (bilinear) to the image."""
        return F.interpolate(torch.as_tensor(outputs[0]), size=(height, width), mode="bilinear", align_corners=False)

    def eval_set(self, data: Path, split: str, img_size: int, backbone: str) -> Dataset:
        """Frames resized to ``img_size`` high and NYUv2's 4:3 wide, the width a multiple of 64 (every
        encoder's stride; 480 -> 480x640, NYUv2's own size)."""
        width = max(64, round(img_size * 4 / 3 / 64) * 64)
        return NYUv2(data, split, DepthTransform(img_size, False, *normalization(backbone), val_size=(img_size, width)))


class ClsSpec(TaskSpec):
    name, title, hparams = "cls", "classification", ("model", "class_names", "optim")
    dataset, splits, transform = ImageFolder, ("train", "val"), ClsTransform
    default_data = staticmethod(default_cls_data)
    format_table = staticmethod(format_cls_table)
    qat = True
    headline = ("top1",), "top-1", 100
    parity_thresholds = {"fp32": {"agreement": 1.0, "max_rel": 1e-3}, "fp16": {"agreement": 0.95},
                         "int8": {"agreement": 0.9}}

    def build_model(self, model: dict) -> ClsModel:
        return ClsModel(ClsModelConfig(**model))

    def app_steps(self, model: nn.Module, image: Image.Image, size: int, data: Path,
                  input_hw: tuple[int, int]) -> tuple[Callable[[], object], Callable[[list, str], object]]:
        """Resize, centre crop and normalise; softmax and the top 5."""
        transform = self.eval_set(data, self.splits[1], size, model.cfg.encoder).transform
        return lambda: transform(image), lambda outs, graph: torch.as_tensor(outs[0]).softmax(-1).topk(5)

    def check_eval_data(self, val_set: ImageFolder, hparams: dict, data: Path, checkpoint: str | Path) -> None:
        check_classes(val_set.classes, hparams["class_names"], data, checkpoint, "the same class folders")

    def describe(self, hparams: dict) -> dict:
        return {"encoder": hparams["model"]["encoder"], "linear_probe": hparams["model"].get("linear_probe", False)}


class DetSpec(TaskSpec):
    name, title, hparams = "det", "detection", ("model", "class_names", "category_ids", "optim")
    dataset, splits = COCODetection, ("train", "val")
    collate = staticmethod(collate_det)
    default_data = staticmethod(default_det_data)
    format_table = staticmethod(format_det_table)
    precisions, explained = ("fp32",), False
    headline = ("bbox", "AP"), "box AP", 100
    reference_name = "full"
    parity_thresholds = {"fp32": {"agreement": 0.99, "max_rel": 1e-3, "score_abs": 1e-3, "mask_agreement": 0.999}}

    def build_model(self, model: dict) -> DetModel:
        return DetModel(DetModelConfig(**model))

    def reference_graph(self, model: DetModel) -> nn.Module:
        return detection.graph_module(model, self.reference_name)

    def app_steps(self, model: DetModel, image: Image.Image, size: int, data: Path,
                  input_hw: tuple[int, int]) -> tuple[Callable[[], object], Callable[[list, str], object]]:
        """Letterbox (long side to ``size``, normalise, pad); what the artifact's graph leaves to the app
        (``mcq.tasks.detection.detections``): for a ``features`` graph the RPN's proposal decoding and NMS, RoIAlign,
        the box and mask heads, NMS per class and mask pasting, in Python; for the ``full`` graph nothing."""
        pixels = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])
        mean, std = normalization(model.cfg.encoder)
        return (lambda: detection.letterbox(pixels(image), size, mean, std),
                lambda outs, graph: detection.detections(model, graph, outs, input_hw))

    def artifact_graph(self, fmt: str, model: DetModel, meta: dict) -> tuple[nn.Module, nn.Module, dict]:
        """The graph ``fmt`` takes (``mcq.tasks.detection``: the full Mask R-CNN or its features), checked against
        the full graph."""
        graph = detection.GRAPHS[fmt]
        meta = {**meta, **detection.graph_metadata(model, graph, tuple(meta["input"]["shape"][-2:]))}
        return detection.graph_module(model, graph), self.reference_graph(model), meta

    def artifact_run(self, run_all: Callable | None, model: DetModel, meta: dict) -> Callable | None:
        """The artifact's outputs as detections (post-processed in Python for a ``features`` graph)."""
        size = tuple(meta["input"]["shape"][-2:])
        return None if run_all is None else lambda x: detection.detections(model, meta["graph"], run_all(x), size)

    def parity(self, run: Callable[[np.ndarray], dict], model: nn.Module, images: torch.Tensor,
               precision: str) -> dict:
        return det_parity(run, model, images, precision, self.parity_thresholds)

    def train_set(self, data: Path, recipe: Recipe, backbone: str) -> COCODetection:
        return COCODetection(data, "train", DetTransform(recipe.img_size, True, recipe.crop_scale))

    def eval_set(self, data: Path, split: str, img_size: int, backbone: str) -> COCODetection:
        """Images at their own size: the model resizes them and answers in their pixels, as COCOeval wants."""
        return COCODetection(data, split, DetTransform(img_size, False))

    def check_eval_data(self, val_set: COCODetection, hparams: dict, data: Path, checkpoint: str | Path) -> None:
        trained = hparams["category_ids"]
        if val_set.category_ids != trained:
            raise McqError(f"{val_set.annotation_file}: categories {val_set.category_ids[:8]}"
                           f"{'...' if len(val_set.category_ids) > 8 else ''} differ from the {len(trained)} "
                           f"{checkpoint} was trained on; evaluate on a dataset with the same categories")

    def prepare_eval(self, model: DetModel, img_size: int) -> None:
        model.set_img_size(img_size)


class ClipSpec(TaskSpec):
    """CLIP pretraining on image-text shards (DataCompDR layout); see ``mcq.train.clip_module``."""

    name, title = "clip", "CLIP"
    exported, explained, image_text = False, False, True
    default_data = staticmethod(default_clip_data)
    format_table = staticmethod(format_clip_table)
    default_model = "MobileCLIP2-S0"

    def build_model(self, model: dict) -> nn.Module:
        return create_clip_model(model["cfg"], model["img_size"])

    def check_input_size(self, model: nn.Module, img_size: int) -> None:
        if img_size % 32:
            raise McqError(f"--img-size {img_size}: use a multiple of 32 (e.g. {max(32, round(img_size / 32) * 32)})")

    def describe(self, hparams: dict) -> dict:
        m = hparams["model"]
        return {"model": m["name"], "captions": m["captions"], "distill": m["distill"]}


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
