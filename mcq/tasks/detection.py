"""What of Mask R-CNN goes into an artifact, and the Python that does the rest.

Two graphs of a ``DetModel``, both on one normalised image of a fixed size S x S (the input of every mcq artifact;
``letterbox`` makes it from a photo):

- ``full`` (``DetGraph``, ONNX): everything, NMS and mask pasting included -> ``boxes`` [N, 4] (xyxy, input
  pixels), ``labels`` [N] (1..K: ``class_names[label - 1]``), ``scores`` [N], ``masks`` [N, 1, S, S]
  (probabilities; > 0.5 is the object). torchvision's model exports with the TorchScript-based exporter only.
- ``features`` (``DetFeatures``, ExecuTorch and Core ML, which need a graph without data-dependent shapes): the
  encoder, the FPN and the RPN head -> the FPN maps ``fpn_<level>``, the RPN's ``objectness_<i>`` and
  ``deltas_<i>`` per level. ``detect`` does the rest in Python with torchvision's code (anchors, proposal
  decoding and NMS, RoIAlign, box and mask heads with the checkpoint's weights, NMS per class, mask pasting),
  step by step as an app would port it; its answer is the ``full`` graph's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import concat_box_prediction_layers

from mcq.models.detector import DetModel

DETECTIONS = ("boxes", "labels", "scores", "masks")
GRAPHS = {"onnx": "full", "executorch": "features", "coreml": "features"}


def letterbox(image: torch.Tensor, size: int, mean, std) -> tuple[torch.Tensor, float]:
    """A float RGB image [3, h, w] in [0, 1] as a det artifact's input: its long side scaled to ``size`` (bilinear,
    as the model does it), normalised, padded right and bottom with zeros (the mean colour) to ``size`` x ``size``.
    Returns the input and the scale: a box in the input's pixels divided by it is in the image's."""
    scale = size / max(image.shape[-2:])
    x = F.interpolate(image[None], scale_factor=scale, mode="bilinear", align_corners=False,
                      recompute_scale_factor=True)[0]
    x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    return F.pad(x, (0, size - x.shape[-1], 0, size - x.shape[-2])), scale


class DetGraph(nn.Module):
    """The whole Mask R-CNN on one normalised image: ``x`` [1, 3, S, S] -> boxes, labels, scores, masks."""

    def __init__(self, model: DetModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sizes = [(x.shape[-2], x.shape[-1])]
        feats = self.model.backbone(x)
        proposals, _ = self.model.rpn(ImageList(x, sizes), feats)
        dets, _ = self.model.roi_heads(feats, proposals, sizes)
        det = self.model.transform.postprocess(dets, sizes, sizes)[0]  # pastes the masks into the image
        return tuple(det[k] for k in DETECTIONS)


class DetFeatures(nn.Module):
    """Encoder + FPN + RPN head: ``x`` [1, 3, S, S] -> FPN maps, then objectness and box deltas per level."""

    def __init__(self, model: DetModel):
        super().__init__()
        self.backbone, self.head = model.backbone, model.rpn.head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = list(self.backbone(x).values())
        objectness, deltas = self.head(maps)
        return (*maps, *objectness, *deltas)


def graph_module(model: DetModel, graph: str) -> nn.Module:
    return (DetGraph if graph == "full" else DetFeatures)(model).eval()


def output_names(model: DetModel, graph: str) -> list[str]:
    if graph == "full":
        return list(DETECTIONS)
    levels = [*model.backbone.levels, "pool"]
    per_level = [f"{kind}_{i}" for kind in ("objectness", "deltas") for i in range(len(levels))]
    return [f"fpn_{k}" for k in levels] + per_level


def detect(model: DetModel, outputs: list[torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Mask R-CNN's data-dependent part on a ``features`` artifact's ``outputs`` for one image of ``size`` (the
    input's H, W), as torchvision's ``RegionProposalNetwork``, ``RoIHeads`` and ``GeneralizedRCNNTransform`` do it."""
    n = len(model.backbone.levels) + 1
    maps, objectness, deltas = outputs[:n], outputs[n:2 * n], outputs[2 * n:3 * n]
    feats = OrderedDict(zip([*model.backbone.levels, "pool"], maps))
    sizes = [tuple(size)]
    images = ImageList(torch.empty(1, 3, *size), sizes)  # the anchors need only its shape
    rpn = model.rpn
    with torch.no_grad():
        anchors = rpn.anchor_generator(images, maps)
        per_level = [o[0].numel() for o in objectness]
        scores, box_deltas = concat_box_prediction_layers(objectness, deltas)
        proposals = rpn.box_coder.decode(box_deltas, anchors).view(1, -1, 4)
        proposals, _ = rpn.filter_proposals(proposals, scores, sizes, per_level)  # top-k per level, NMS
        dets, _ = model.roi_heads(feats, proposals, sizes)  # RoIAlign, box head, NMS per class, mask head
        det = model.transform.postprocess(dets, sizes, sizes)[0]  # masks pasted into the image
    return {k: det[k] for k in DETECTIONS}


def detections(model: DetModel, graph: str, outputs: list, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """A det artifact's raw ``outputs`` (numpy or tensors, in ``output_names`` order) as boxes/labels/scores/masks."""
    outputs = [torch.as_tensor(o) for o in outputs]
    return dict(zip(DETECTIONS, outputs)) if graph == "full" else detect(model, outputs, size)


_MEANING = {
    "boxes": "xyxy in the input's pixels (divide by the letterbox scale for the image's), scores descending",
    "labels": "class of each box, 1..K: class_names[label - 1]",
    "scores": "confidence of each box (torchvision's box_score_thresh 0.05, at most 100)",
    "masks": "mask probability of each box at input resolution; > 0.5 is the object",
}


def graph_metadata(model: DetModel, graph: str, shape: tuple[int, int]) -> dict:
    """What a det artifact of ``graph`` holds and returns, for its metadata."""
    names = output_names(model, graph)
    if graph == "full":
        shapes = [["N", 4], ["N"], ["N"], ["N", 1, *shape]]
        return {"graph": "full", "outputs": [{"name": n, "shape": s, "meaning": _MEANING[n]}
                                             for n, s in zip(names, shapes)]}
    with torch.no_grad():
        outs = DetFeatures(model).eval()(torch.zeros(1, 3, *shape))
    strides = model.backbone.strides
    meaning = ([f"FPN map, stride {s}" for s in strides]
               + [f"RPN objectness logits per anchor, stride {s}" for s in strides]
               + [f"RPN box deltas (dx, dy, dw, dh) per anchor, stride {s}" for s in strides])
    return {"graph": "features",
            "outputs": [{"name": n, "shape": list(o.shape), "meaning": m} for n, o, m in zip(names, outs, meaning)],
            "postprocess": "mcq.tasks.detection.detect: anchors, proposals and NMS, RoIAlign, the box and mask heads "
                           "of the source checkpoint (not in this artifact), NMS per class, mask pasting"}
