"""Parameter counts of mcq's task models beside the paper's (arXiv 2405.08911, Tables 9 and 10).

Counted as the paper counts: the training form (MobileOne branches unfused, UperNet's auxiliary head included),
150 ADE20K classes for segmentation, 80 COCO classes for Mask R-CNN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mcq.models.detector import create_det_model
from mcq.models.encoders import list_encoders
from mcq.models.heads import HEADS
from mcq.models.segmentor import create_seg_model

SEG_CLASSES, DET_CLASSES = 150, 80
MASK_RCNN = "maskrcnn"
HEAD_NAMES = {"fpn": "SemanticFPN", "upernet": "UperNet", MASK_RCNN: "Mask R-CNN"}

ONE_FPN_CONV = 256 * 256 * 9 + 256  # a 3x3 conv of 256 channels with bias: 590,080
_FPN_GAP = (
    "the paper's MCi SemanticFPN counts one 3x3 256-channel conv (0.59M) less than mmseg's FPN + FPNHead: its Mask "
    "R-CNN minus its SemanticFPN is 16.5M for all three MCi, mcq's 15.9M, and mmdet's Mask R-CNN heads are "
    "torchvision's to 4.4k parameters; which conv the paper leaves out it does not say"
)


@dataclass(frozen=True)
class PaperCount:
    """A parameter count the paper prints; ``explained`` parameters of mcq's model it leaves out, and ``why``."""

    params_m: float
    source: str
    explained: int = 0
    why: str = ""


PAPER: dict[tuple[str, str], PaperCount] = {
    ("mci0", "fpn"): PaperCount(14.5, "Table 9", ONE_FPN_CONV, _FPN_GAP),
    ("mci1", "fpn"): PaperCount(24.6, "Table 9", ONE_FPN_CONV, _FPN_GAP),
    ("mci2", "fpn"): PaperCount(38.5, "Table 9", ONE_FPN_CONV, _FPN_GAP),
    ("swin_l", "upernet"): PaperCount(234.1, "Table 9, reference row"),
    ("vit_adapter_b", "upernet"): PaperCount(133.9, "Table 9, reference row"),
    ("vit_adapter_b", "fpn"): PaperCount(104.6, "Table 9, reference row"),
    ("mci0", MASK_RCNN): PaperCount(31.0, "Table 10"),
    ("mci1", MASK_RCNN): PaperCount(41.1, "Table 10"),
    ("mci2", MASK_RCNN): PaperCount(55.0, "Table 10"),
}


def count_params(encoder: str, head: str) -> int:
    """Parameters of ``encoder`` + ``head`` ("fpn", "upernet" or "maskrcnn"), built on the meta device."""
    with torch.device("meta"):
        if head == MASK_RCNN:
            model = create_det_model(encoder, DET_CLASSES)
        else:
            model = create_seg_model(encoder, SEG_CLASSES, head)
    return sum(p.numel() for p in model.parameters())


def compare_params() -> list[dict]:
    """One row per encoder x head (SemanticFPN, UperNet, Mask R-CNN): mcq's count in millions, the paper's where it
    prints one, the difference in % before and after the part the paper is known to leave out."""
    rows = []
    for info in list_encoders():
        for head in (*HEADS, MASK_RCNN):
            mcq = count_params(info.name, head) / 1e6
            paper = PAPER.get((info.name, head))
            row = {"encoder": info.name, "head": head, "mcq_m": mcq, "paper_m": None, "diff_pct": None,
                   "explained_pct": None, "source": "", "why": ""}
            if paper:
                row.update(paper_m=paper.params_m, source=paper.source, why=paper.why,
                           diff_pct=100 * (mcq / paper.params_m - 1),
                           explained_pct=100 * ((mcq - paper.explained / 1e6) / paper.params_m - 1))
            rows.append(row)
    return rows


def format_params(rows: list[dict]) -> str:
    """``compare_params``' rows as a table (``mcq models --params``), each known gap's reason as a numbered note."""

    def pct(v: float | None) -> str:
        return "" if v is None else f"{v:+.2f}%"

    lines = [f"{'model':<28} {'mcq (M)':>8} {'paper (M)':>9} {'diff':>7} {'explained':>9}  source"]
    notes: list[str] = []
    for r in rows:
        paper = "" if r["paper_m"] is None else f"{r['paper_m']:.1f}"
        explained = pct(r["explained_pct"]) if r["why"] else ""
        if r["why"] and r["why"] not in notes:
            notes.append(r["why"])
        mark = f" [{notes.index(r['why']) + 1}]" if r["why"] else ""
        lines.append(f"{r['encoder'] + ' + ' + HEAD_NAMES[r['head']]:<28} {r['mcq_m']:>8.2f} {paper:>9} "
                     f"{pct(r['diff_pct']):>7} {explained:>9}  {r['source']}{mark}".rstrip())
    return "\n".join([*lines, *(f"[{i}] {why}" for i, why in enumerate(notes, 1))])
