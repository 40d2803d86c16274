"""Datasets in their official layouts, and the embedded synthetic ones."""

from mcq.data.ade20k import ADE20K, IGNORE_INDEX, ade20k_class_names, read_class_names
from mcq.data.coco import COCODetection
from mcq.data.imagefolder import ImageFolder
from mcq.data.nyu import NYUv2, read_depth
from mcq.data.synth import (
    CLS_CLASSES, DET_CLASSES, SEG_CLASSES, default_cls_data, default_depth_data, default_det_data, default_seg_data,
    synth_cls, synth_depth, synth_det, synth_seg,
)
from mcq.data.synth_clip import default_clip_data, synth_clip
from mcq.data.synthetic import SYNTH, synthesize
from mcq.data.transforms import ClsTransform, DepthTransform, DetTransform, SegTransform, collate_det, collate_seg

__all__ = ["ADE20K", "IGNORE_INDEX", "ade20k_class_names", "read_class_names", "COCODetection", "ImageFolder", "NYUv2",
           "read_depth", "CLS_CLASSES", "DET_CLASSES", "SEG_CLASSES", "SYNTH", "default_cls_data", "default_depth_data",
           "default_det_data", "default_seg_data", "synth_cls", "synth_depth", "synth_det", "synth_seg", "ClsTransform",
           "DepthTransform", "DetTransform", "SegTransform", "collate_det", "collate_seg", "default_clip_data",
           "synth_clip", "synthesize"]
