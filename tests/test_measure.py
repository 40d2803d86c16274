"""mcq.profile.measure: the peak-memory rise counts memory freed earlier in the process and taken again."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mcq.profile.measure import peak_rss


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and VmHWM")
def test_peak_rss_counts_reused_heap_pages():
    blocks = [np.ones(1000) for _ in range(25_000)]  # 200 MB in small malloc'd blocks, then freed
    del blocks
    with peak_rss() as mem:
        blocks = [np.ones(1000) for _ in range(12_500)]  # 100 MB: the freed pages would serve it untrimmed
    assert mem["peak_mb"] > 50
