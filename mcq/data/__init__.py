"""Datasets in their official layouts, and the embedded synthetic ones."""

from mcq.data.ade20k import ADE20K, IGNORE_INDEX, ade20k_class_names, read_class_names
from mcq.data.synth import SEG_CLASSES, default_seg_data, synth_seg
from mcq.data.transforms import SegTransform, collate_seg

__all__ = ["ADE20K", "IGNORE_INDEX", "ade20k_class_names", "read_class_names", "SEG_CLASSES", "default_seg_data", "synth_seg",
           "SegTransform", "collate_seg"]
