"""Analyses of trained encoders (e.g. the mean attention distance of a ViT, the paper's Fig. 3)."""
