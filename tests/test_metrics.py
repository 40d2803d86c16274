"""mIoU / mAcc / aAcc against a hand computation (mmseg's definitions)."""

import math

import pytest
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from mcq.tasks.metrics import format_seg_table, seg_metrics
from mcq.train.module import warmup_poly
from mcq.recipes import load_recipe


def _metrics(target, pred, num_classes):
    cm = MulticlassConfusionMatrix(num_classes, ignore_index=255)
    cm.update(torch.tensor(pred), torch.tensor(target))
    return seg_metrics(cm.compute(), [f"c{i}" for i in range(num_classes)])


def test_hand_computed_example():
    # valid (target, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,1); one pixel ignored (255)
    # class 0: I=1, label=2, pred=1, U=2 -> IoU .5, Acc .5
    # class 1: I=2, label=2, pred=4, U=4 -> IoU .5, Acc 1
    # class 2: I=0, label=1, pred=0, U=1 -> IoU 0,  Acc 0
    # class 3: never labelled nor predicted -> undefined, left out of the means
    target = [[0, 0, 1], [1, 2, 255]]
    pred = [[0, 1, 1], [1, 1, 3]]
    m = _metrics(target, pred, 4)
    assert m["mIoU"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert m["mAcc"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert m["aAcc"] == pytest.approx(3 / 5)
    assert m["per_class"]["c3"] == {"IoU": None, "Acc": None}
    assert "mIoU  33.33" in format_seg_table(m)


def test_predicted_but_unlabelled_class_counts_in_miou_not_in_macc():
    m = _metrics([[0, 0]], [[0, 1]], 2)
    assert m["per_class"]["c1"]["IoU"] == 0.0 and m["per_class"]["c1"]["Acc"] is None
    assert m["mIoU"] == pytest.approx((0.5 + 0.0) / 2)
    assert m["mAcc"] == pytest.approx(0.5)


def test_recipes_are_the_papers_table_14():
    fpn, uper = load_recipe("seg", "fpn"), load_recipe("seg", "upernet")
    assert (fpn.max_steps, fpn.batch_size, fpn.weight_decay, fpn.warmup_steps) == (40000, 64, 5e-4, 0)
    assert (uper.max_steps, uper.batch_size, uper.weight_decay, uper.warmup_steps) == (160000, 16, 0.01, 1500)
    for r in (fpn, uper):
        assert r.schedule == "poly" and r.img_size == 512


def test_warmup_then_poly_decay():
    assert warmup_poly(0, 100, 10, 1.0, 0.0) == pytest.approx(0.1)
    assert warmup_poly(9, 100, 10, 1.0, 0.0) == pytest.approx(1.0)
    assert warmup_poly(50, 100, 0, 1.0, 0.0) == pytest.approx(0.5)
    assert warmup_poly(50, 100, 0, 0.9, 0.0) == pytest.approx(0.5**0.9)
    assert warmup_poly(100, 100, 0, 1.0, 0.01) == pytest.approx(0.01)
    assert not math.isnan(warmup_poly(0, 0, 0, 1.0, 0.0))
