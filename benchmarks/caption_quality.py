"""The caption-quality experiment (``mcq experiment caption-quality``, see ``mcq.experiments.caption_quality``):
CLIP pretraining of one encoder on noisy web captions only, on DataCompDR's web + synthetic captions, and none,
each judged by zero-shot accuracy, a frozen-encoder probe and fine-tuning on shares of the labels, the gaps between
arms with 95% intervals over seeds, and retrieval recall.

    .venv/bin/python benchmarks/caption_quality.py                        # 3 seeds: 21 minutes on 2 CPU cores
    .venv/bin/python benchmarks/caption_quality.py --help                 # the budgets
"""

from __future__ import annotations

import sys

from mcq.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "caption-quality", *sys.argv[1:]]))
