"""Detection and instance segmentation: torchvision's Mask R-CNN on an mcq encoder.

The encoder's maps (strides 4..32, or 4..64 for MCi3/4) go through torchvision's FPN (256 channels) with a
max-pooled extra level, as in torchvision's ``maskrcnn_resnet50_fpn``; ViT-B/16's encoder already ends in ViTDet's
simple feature pyramid (256 channels at strides 4..32), which takes the FPN's place (ViTDet, Sec. 3). RPN, RoIAlign,
box and mask heads, NMS and the loss are torchvision's, with its defaults for Mask R-CNN on COCO. Anchors are 8x
each level's stride (torchvision's 32..512 on strides 4..64).

``DetModel`` is a ``torchvision.models.detection.MaskRCNN``: it takes a list of float RGB images in [0, 1] of any
sizes (and targets when training), normalises them with the encoder's mean/std, resizes them so that the long side
is ``img_size`` (padding the batch to a multiple of 32), and returns losses (train) or, per image, ``boxes``
(xyxy, the image's own pixels), ``labels`` (1..K), ``scores`` and ``masks`` (N x 1 x H x W probabilities).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign, roi_align
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.poolers import _convert_to_roi_format, _onnx_merge_levels, _setup_scales  # torchvision 0.29's

from mcq.errors import McqError
from mcq.models.encoders import Encoder, create_encoder, normalization


@dataclass
class DetModelConfig:
    """Everything needed to rebuild a detection model; stored in every checkpoint."""

    encoder: str
    num_classes: int  # object classes, without the background
    img_size: int = 1024  # the long side images are resized to
    drop_path: float = 0.0
    fpn_channels: int = 256  # width of the FPN, the RPN head and the mask head (torchvision's 256)
    roi_batch_size: int = 512  # RoIs sampled per image for the box and mask heads, at most 1/4 positive
    roi_align: str = "torchvision"  # or "mmdet": its RoIAlign (an mmdet model's, `mcq import mmdet`)
    anchors: str = "torchvision"  # or "mmdet": its anchors (an mmdet model's)
    mask_paste: str = "torchvision"  # or "mmdet": masks pasted into the image as mmdet does (an mmdet model's)
    input_norm: dict | None = None  # what an imported mmdet model was trained on, if not the encoder's: Renormalize

    def __post_init__(self) -> None:
        for field, choices in (("roi_align", ROI_POOLS), ("anchors", ANCHORS), ("mask_paste", MASK_PASTES)):
            if getattr(self, field) not in choices:
                raise McqError(f"{field} {getattr(self, field)!r}: give {' or '.join(choices)}")


class MMDetRoIAlign(MultiScaleRoIAlign):
    """mmdet's RoI pooling: mmcv's RoIAlign (half-pixel ``aligned=True``, ``sampling_ratio=0``: as many samples per
    bin as the bin is wide) on the level each box maps to, which is torchvision's ``LevelMapper``'s (mmdet's
    ``finest_scale`` 56 is its canonical 224 at level 4). torchvision's Mask R-CNN pools unaligned, two samples per
    bin; a model trained one way loses accuracy pooled the other (``benchmarks/mmdet_roi_align.py``)."""

    def __init__(self, featmap_names: list[str], output_size: int):
        super().__init__(featmap_names, output_size, sampling_ratio=0)

    def forward(self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        feats = [x[k] for k in self.featmap_names]
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(feats, image_shapes, self.canonical_scale,
                                                         self.canonical_level)
        rois, levels = _convert_to_roi_format(boxes), self.map_levels(boxes)
        pooled = [roi_align(feat, rois[levels == level], self.output_size, scale, self.sampling_ratio, aligned=True)
                  for level, (feat, scale) in enumerate(zip(feats, self.scales))]
        if torchvision._is_tracing():  # as torchvision's own pooler: scatter, which ONNX export can trace
            return _onnx_merge_levels(levels, pooled)
        out = pooled[0].new_zeros((len(rois), *pooled[0].shape[1:]))
        for level, result in enumerate(pooled):
            out[levels == level] = result
        return out


ROI_POOLS = {"torchvision": lambda names, size: MultiScaleRoIAlign(names, output_size=size, sampling_ratio=2),
             "mmdet": MMDetRoIAlign}


class MMDetAnchorGenerator(AnchorGenerator):
    """mmdet's anchors (its ``AnchorGenerator``, ``center_offset=0``): torchvision's, but with the base anchors not
    rounded to whole pixels, and each level's anchors spaced by the level's stride where torchvision spaces them by
    the padded image's size over the map's (the same only where that size is a multiple of the coarsest stride).
    Rounded anchors move an mmdet model's boxes by up to a pixel (``tests/test_mm_interop_det.py``)."""

    def __init__(self, sizes: tuple, aspect_ratios: tuple, strides: list[int]):
        super().__init__(sizes, aspect_ratios)
        self.strides = strides

    def generate_anchors(self, scales: list[int], aspect_ratios: list[float], dtype: torch.dtype = torch.float32,
                         device: torch.device = torch.device("cpu")) -> torch.Tensor:
        scales_ = torch.as_tensor(scales, dtype=dtype, device=device)
        h_ratios = torch.sqrt(torch.as_tensor(aspect_ratios, dtype=dtype, device=device))
        ws = (scales_[None, :] / h_ratios[:, None]).view(-1)
        hs = (scales_[None, :] * h_ratios[:, None]).view(-1)
        return torch.stack([-ws, -hs, ws, hs], dim=1) / 2

    def grid_anchors(self, grid_sizes: list[list[int]], strides: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        """torchvision's, each level spaced by its own stride instead of the ``strides`` torchvision derives."""
        device = self.cell_anchors[0].device
        return super().grid_anchors(grid_sizes, [[torch.tensor(s, device=device)] * 2 for s in self.strides])


ANCHORS = {"torchvision": lambda sizes, ratios, strides: AnchorGenerator(sizes, ratios),
           "mmdet": MMDetAnchorGenerator}


def paste_masks_as_mmdet(masks: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """N x 1 x M x M mask probabilities pasted into an image of ``size`` as mmdet's ``FCNMaskHead`` does: sampled
    bilinearly at each pixel's centre within the box's own extent (torchvision rounds the box to whole pixels and
    pads the mask by one cell first). Above 0.5, the pixels mmdet's binary masks hold."""
    x0, y0, x1, y1 = boxes.split(1, dim=1)
    ys = torch.arange(size[0], dtype=masks.dtype, device=masks.device) + 0.5
    xs = torch.arange(size[1], dtype=masks.dtype, device=masks.device) + 0.5
    gx, gy = (xs - x0) / (x1 - x0) * 2 - 1, (ys - y0) / (y1 - y0) * 2 - 1  # N x W, N x H
    grid = torch.stack([gx[:, None, :].expand(-1, size[0], -1), gy[:, :, None].expand(-1, -1, size[1])], dim=3)
    return F.grid_sample(masks, grid, align_corners=False)


class MMDetMaskPasting(GeneralizedRCNNTransform):
    """torchvision's transform, pasting masks with ``paste_masks_as_mmdet``."""

    def postprocess(self, result: list[dict[str, torch.Tensor]], image_shapes: list[tuple[int, int]],
                    original_image_sizes: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        if self.training:
            return result
        masks = [r.pop("masks") for r in result]
        result = super().postprocess(result, image_shapes, original_image_sizes)
        for r, m, size in zip(result, masks, original_image_sizes):
            r["masks"] = paste_masks_as_mmdet(m, r["boxes"], size)
        return result


MASK_PASTES = ("torchvision", "mmdet")


class DetBackbone(nn.Module):
    """Encoder -> FPN (or the encoder's own simple feature pyramid) -> maps "0".."n-1" and "pool"."""

    def __init__(self, encoder: Encoder, out_channels: int = 256):
        super().__init__()
        self.encoder = encoder
        if encoder.neck is None:
            self.fpn = FeaturePyramidNetwork(encoder.channels, out_channels, extra_blocks=LastLevelMaxPool())
            self.out_channels = out_channels
        else:  # ViTDet: the simple feature pyramid is the neck; only the extra level is added
            self.fpn = None
            self.extra = LastLevelMaxPool()
            self.out_channels = encoder.channels[0]
        self.levels = [str(i) for i in range(len(encoder.strides))]
        self.strides = [*encoder.strides, 2 * encoder.strides[-1]]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = OrderedDict(zip(self.levels, self.encoder(x)))
        if self.fpn is not None:
            return self.fpn(feats)
        results, names = self.extra(list(feats.values()), [], list(feats))
        return OrderedDict(zip(names, results))


class DetModel(MaskRCNN):
    def __init__(self, cfg: DetModelConfig, encoder: Encoder | None = None):
        encoder = encoder or create_encoder(cfg.encoder, drop_path=cfg.drop_path)
        encoder.renormalize(cfg.input_norm)
        backbone = DetBackbone(encoder, cfg.fpn_channels)
        anchors = ANCHORS[cfg.anchors](tuple((8 * s,) for s in backbone.strides),
                                       ((0.5, 1.0, 2.0),) * len(backbone.strides), backbone.strides)
        mean, std = normalization(cfg.encoder)
        width = backbone.out_channels
        super().__init__(
            backbone, min_size=cfg.img_size, max_size=cfg.img_size,
            image_mean=list(mean), image_std=list(std), rpn_anchor_generator=anchors,
            box_roi_pool=ROI_POOLS[cfg.roi_align](backbone.levels, 7),
            box_batch_size_per_image=cfg.roi_batch_size,
            box_predictor=FastRCNNPredictor(1024, cfg.num_classes + 1),  # after torchvision's TwoMLPHead of 1024
            mask_roi_pool=ROI_POOLS[cfg.roi_align](backbone.levels, 14),
            mask_head=MaskRCNNHeads(width, (width,) * 4, dilation=1),
            mask_predictor=MaskRCNNPredictor(width, width, cfg.num_classes + 1),
        )
        if cfg.mask_paste == "mmdet":
            t = self.transform
            self.transform = MMDetMaskPasting(t.min_size, t.max_size, t.image_mean, t.image_std)
        self.transform.size_divisible = encoder.max_stride
        self.cfg = cfg

    @property
    def encoder(self) -> Encoder:
        return self.backbone.encoder

    def set_img_size(self, size: int) -> None:
        """Resize images so that their long side is ``size`` (evaluation at another size than training)."""
        self.transform.min_size, self.transform.max_size = (size,), size


def create_det_model(encoder: str, num_classes: int, img_size: int = 1024, drop_path: float = 0.0) -> DetModel:
    return DetModel(DetModelConfig(encoder=encoder, num_classes=num_classes, img_size=img_size, drop_path=drop_path))
