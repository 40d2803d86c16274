"""The caption-quality experiment (``mcq experiment caption-quality``, see ``mcq.experiments.caption_quality``):
CLIP pretraining of one encoder on noisy web captions only, on DataCompDR's web + synthetic captions, and none,
each judged by SemanticFPN mIoU after fine-tuning (mean and spread over seeds) and by retrieval recall.

    .venv/bin/python benchmarks/caption_quality.py --seeds 0,1            # < 30 minutes on 2 idle CPU cores
    .venv/bin/python benchmarks/caption_quality.py --help                 # the budgets
"""

from __future__ import annotations

import sys

from mcq.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "caption-quality", *sys.argv[1:]]))
