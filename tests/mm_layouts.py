"""mmsegmentation models built from mmseg's own modules, and checkpoints written as mmengine's Runner writes them.

The oracle is mmsegmentation 1.2.2 and mmdetection 3.3.0 on mmcv-lite 2.1.0 (mmcv without its compiled ops;
``tests/mm-oracle.txt``). They import ``mmcv.ops`` eagerly, mostly for heads mcq does not use; ``_without_mmcv_ops``
answers those imports with classes that raise if anything builds them, so no op of mmcv's can run unnoticed, except
the two Mask R-CNN runs, which are given torchvision's: ``RoIAlign`` (mmcv's kernel, aligned, average pooling and
``sampling_ratio=0``, is torchvision's ``roi_align`` with ``aligned=True``) and ``batched_nms`` (the same greedy NMS
per class, by the same coordinate offsets). The backbone is what mmpretrain's ``TIMMBackbone(features_only=True)``
runs: timm's ``FeatureListNet`` of the MCi model; its maps go through mmseg's neck and heads, and the logits are
resized to the input as ``EncoderDecoder`` does.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn
from torch.nn.modules.utils import _pair
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.ops import roi_align


class _Unbuilt:
    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__}: an mmcv op, which mmcv-lite does not build")


class RoIAlign(nn.Module):
    """``mmcv.ops.RoIAlign`` (average pooling) as torchvision's ``roi_align``."""

    def __init__(self, output_size, spatial_scale: float = 1.0, sampling_ratio: int = 0, pool_mode: str = "avg",
                 aligned: bool = True, use_torchvision: bool = False):
        super().__init__()
        assert pool_mode == "avg", pool_mode
        self.output_size, self.spatial_scale = _pair(output_size), spatial_scale
        self.sampling_ratio, self.aligned = sampling_ratio, aligned

    def forward(self, feats: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return roi_align(feats, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, nms_cfg: dict,
                class_agnostic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``mmcv.ops.batched_nms`` for ``type='nms'``: (boxes with their scores, kept indices), best score first."""
    cfg = dict(nms_cfg)
    assert cfg.pop("type", "nms") == "nms", nms_cfg
    agnostic = cfg.pop("class_agnostic", class_agnostic)
    keep = tv_batched_nms(boxes, scores, torch.zeros_like(idxs) if agnostic else idxs, cfg["iou_threshold"])
    keep = keep[:cfg["max_num"]] if cfg.get("max_num", -1) > 0 else keep
    return torch.cat([boxes[keep], scores[keep, None]], -1), keep


TORCHVISION_OPS = {"RoIAlign": RoIAlign, "batched_nms": batched_nms}


def _op(name: str) -> type:
    if name.startswith("__"):
        raise AttributeError(name)
    return TORCHVISION_OPS.get(name) or type(name, (_Unbuilt,), {})


class _OpsStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``mmcv.ops`` and its submodules (``mmcv.ops.nms``, ...) as modules whose every name is an unbuildable op."""

    def find_spec(self, name, path=None, target=None):
        if name == "mmcv.ops" or name.startswith("mmcv.ops."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__, module.__getattr__ = [], _op
        return module

    def exec_module(self, module):
        pass


def _without_mmcv_ops() -> None:
    if not any(isinstance(f, _OpsStandIn) for f in sys.meta_path):
        sys.meta_path.insert(0, _OpsStandIn())


_without_mmcv_ops()
from mmseg.models.decode_heads import FCNHead, FPNHead, UPerHead  # noqa: E402
from mmseg.models.necks import FPN  # noqa: E402
from mmseg.models.utils import resize  # noqa: E402

BN = dict(type="BN", requires_grad=True)


class TimmBackbone(nn.Module):
    """mmpretrain's ``TIMMBackbone``: its model is ``timm_model``, its output timm's feature maps."""

    def __init__(self, model_name: str):
        super().__init__()
        self.timm_model = timm.create_model(model_name, features_only=True, pretrained=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.timm_model(x)


class MMSegModel(nn.Module):
    """mmseg's ``EncoderDecoder`` at inference: backbone -> neck -> decode head -> logits resized to the input."""

    def __init__(self, model_name: str, head: str, num_classes: int):
        super().__init__()
        self.backbone = TimmBackbone(model_name)
        info = self.backbone.timm_model.feature_info
        ch, st = info.channels(), info.reduction()
        idx = list(range(len(ch)))
        if head == "fpn":  # configs/sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py
            self.neck = FPN(in_channels=ch, out_channels=256, num_outs=len(ch))
            self.decode_head = FPNHead(in_channels=[256] * len(ch), in_index=idx, feature_strides=st, channels=128,
                                       dropout_ratio=0.1, num_classes=num_classes, norm_cfg=BN, align_corners=False)
        else:  # configs/_base_/models/upernet_swin.py
            self.neck = None
            self.decode_head = UPerHead(in_channels=ch, in_index=idx, pool_scales=(1, 2, 3, 6), channels=512,
                                        dropout_ratio=0.1, num_classes=num_classes, norm_cfg=BN, align_corners=False)
            self.auxiliary_head = FCNHead(in_channels=ch[2], in_index=2, channels=256, num_convs=1, concat_input=False,
                                          dropout_ratio=0.1, num_classes=num_classes, norm_cfg=BN,
                                          align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        feats = feats if self.neck is None else self.neck(feats)
        return resize(self.decode_head(feats), size=x.shape[2:], mode="bilinear", align_corners=False)


def mmdet_mask_rcnn(model_name: str, num_classes: int, class_agnostic: bool = False) -> nn.Module:
    """mmdet 3.3.0's ``MaskRCNN`` as ``configs/_base_/models/mask-rcnn_r50_fpn.py`` builds it (its test_cfg
    included), on the ``TIMMBackbone`` above: its keys are ``backbone``, ``neck``, ``rpn_head``,
    ``roi_head.{bbox,mask}_head``."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import ConfigDict

    register_all_modules(init_default_scope=False)
    channels = timm.create_model(model_name, features_only=True, pretrained=False).feature_info.channels()
    strides = [4, 8, 16, 32]

    def roi_extractor(size: int) -> dict:
        return dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=size, sampling_ratio=0),
                    out_channels=256, featmap_strides=strides)

    def nms(iou: float) -> dict:
        return dict(type="nms", iou_threshold=iou)

    return MODELS.build(ConfigDict(
        type="MaskRCNN",
        backbone=dict(type=TimmBackbone, model_name=model_name),
        neck=dict(type="FPN", in_channels=channels, out_channels=256, num_outs=len(channels) + 1),
        rpn_head=dict(
            type="RPNHead", in_channels=256, feat_channels=256,
            anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0],
                                  strides=[*strides, 64]),
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4)),
        roi_head=dict(
            type="StandardRoIHead", bbox_roi_extractor=roi_extractor(7), mask_roi_extractor=roi_extractor(14),
            bbox_head=dict(
                type="Shared2FCBBoxHead", in_channels=256, fc_out_channels=1024, roi_feat_size=7,
                num_classes=num_classes, reg_class_agnostic=class_agnostic,
                bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2])),
            mask_head=dict(type="FCNMaskHead", num_convs=4, in_channels=256, conv_out_channels=256,
                           num_classes=num_classes, class_agnostic=class_agnostic)),
        train_cfg=None, test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000, nms=nms(0.7), min_bbox_size=0),
                      rcnn=dict(score_thr=0.05, nms=nms(0.5), max_per_img=100, mask_thr_binary=0.5))))


def mmdet_predict(model: nn.Module, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """mmdet's ``MaskRCNN.predict`` on normalised images at their own size: per image ``boxes``, ``labels`` (0..K-1),
    ``scores`` and ``masks`` (N x H x W, bool)."""
    from mmdet.structures import DetDataSample

    shape = tuple(x.shape[2:])
    samples = [DetDataSample(metainfo=dict(img_shape=shape, ori_shape=shape, batch_input_shape=shape,
                                           scale_factor=(1.0, 1.0))) for _ in x]
    with torch.no_grad():
        results = model.predict(x, samples, rescale=True)
    return [{"boxes": r.pred_instances.bboxes, "labels": r.pred_instances.labels, "scores": r.pred_instances.scores,
             "masks": r.pred_instances.masks} for r in results]


IMAGENET = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])  # mm configs' usual normalisation


def runner_checkpoint(model: nn.Module, path: Path, classes: list[str], palette: list[list[int]],
                      data_preprocessor: dict | None = None) -> Path:
    """Save ``model`` as mmengine's ``Runner.save_checkpoint`` does: ``meta`` (with ``dataset_meta`` and the
    config's text, its model's ``data_preprocessor`` where given), ``state_dict``, a ``message_hub`` of real
    ``HistoryBuffer`` objects and numpy scalars, ``optimizer``, ``param_schedulers``."""
    from mmengine.config import Config
    from mmengine.logging import MessageHub

    hub = MessageHub.get_instance(f"mcq-test-{path.name}")
    for step in range(3):
        hub.update_scalar("train/loss", 1.0 / (step + 1))
        hub.update_scalar("train/lr", np.float64(0.01))
    hub.update_info("iter", np.int64(3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    pre = {"data_preprocessor": data_preprocessor} if data_preprocessor else {}
    cfg = dict(model=dict(type="EncoderDecoder", **pre), train_cfg=dict(type="IterBasedTrainLoop", max_iters=3))
    torch.save({
        "meta": {"dataset_meta": {"classes": tuple(classes), "palette": palette}, "iter": 3, "epoch": 0,
                 "seed": np.int64(0), "cfg": Config(cfg).pretty_text, "mmengine_version": "0.10.7"},
        "state_dict": model.state_dict(), "message_hub": hub.state_dict(), "optimizer": optimizer.state_dict(),
        "param_schedulers": [{"base_lrs": [1e-4], "last_step": 3, "verbose": False}],
    }, path)
    return path
