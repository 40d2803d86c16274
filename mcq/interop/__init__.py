"""mmsegmentation and mmdetection checkpoints read and written in their own layouts, without mmcv."""
