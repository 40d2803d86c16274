"""Experiments that run several trainings and compare them (e.g. the caption-quality ablation)."""
