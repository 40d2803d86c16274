"""Profiling: latency, cold start, memory, size, parameters and FLOPs of every model x runtime x precision, with
accuracy beside it, written as a table, ``report.md``, ``profile.json`` and an accuracy-latency plot; profiles of
several devices compare (``mcq.profile.compare``), and ``mcq.profile.devices`` reads on-device benchmark output."""

from mcq.profile.config import ProfileConfig
from mcq.profile.profiler import profile

__all__ = ["ProfileConfig", "profile"]
