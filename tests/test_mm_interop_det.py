"""mmdetection Mask R-CNN checkpoints in and out (``mcq import mmdet``, ``mcq export mmdet``), against mmdet's own
``MaskRCNN``: each part (neck, RPN head, anchors, box head and its coder, mask head) on the same inputs, and the
whole detector's detections (mmcv's RoIAlign and NMS run as torchvision's: ``mm_layouts``)."""

from __future__ import annotations

import importlib.util
import json
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign, roi_align

from ckpt_layouts import randomize_
from mcq.cli import main
from mcq.tasks.checkpoint import read_checkpoint
from mcq.train.det_module import DetTask
from mcq.tasks.schema import read_sidecar
from mcq.models.detector import DetModelConfig, MMDetRoIAlign
from mcq.recipes import load_recipe
from mm_layouts import IMAGENET, mmdet_mask_rcnn, mmdet_predict, runner_checkpoint

CLASSES = ["person", "bicycle", "car"]
PALETTE = [[220, 20, 60], [119, 11, 32], [0, 0, 142]]
EXACT = dict(rtol=0, atol=1e-5)
BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "mmdet_roi_align.py"


def _cli(capsys, argv: list) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module", params=[False, True], ids=["per-class", "class-agnostic"])
def mmdet_run(request, tmp_path_factory):
    """mmdet's Mask R-CNN on MCi0, every weight perturbed, saved as mmengine's Runner saves it (the class-agnostic
    one trained, as its config says, on ImageNet's mean / std); and the mcq checkpoint ``mcq import mmdet`` makes of
    it."""
    agnostic = request.param
    torch.manual_seed(4)  # the modules' own initialisation, which randomize_ perturbs
    mm = randomize_(mmdet_mask_rcnn("fastvit_mci0", len(CLASSES), agnostic), seed=4).eval()
    folder = tmp_path_factory.mktemp("mmdet")
    pre = dict(type="DetDataPreprocessor", **IMAGENET, bgr_to_rgb=True, pad_size_divisor=32) if agnostic else None
    path = runner_checkpoint(mm, folder / "epoch_12.pth", CLASSES, PALETTE, pre)
    rc = main(["import", "mmdet", str(path), "--out", str(folder / "imported.ckpt"), "--img-size", "128"])
    assert rc == 0
    return agnostic, mm, path, read_checkpoint(folder / "imported.ckpt", "det").model


def test_imported_detector_matches_mmdets_layers_part_by_part(mmdet_run):
    agnostic, mm, _, model = mmdet_run
    assert model.cfg.roi_align == "mmdet" and isinstance(model.roi_heads.mask_roi_pool, MMDetRoIAlign)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 96, 160, generator=g)  # not a multiple of the coarsest stride, 64: see the anchors
    with torch.no_grad():
        ours, theirs = list(model.backbone(x).values()), mm.extract_feat(model.encoder.renorm(x))
        assert len(ours) == len(theirs) == 5  # four levels and the max-pooled fifth
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, **EXACT)
        (obj, deltas), (cls, reg) = model.rpn.head(ours), mm.rpn_head(theirs)
        for a, b in zip(obj + deltas, cls + reg):
            torch.testing.assert_close(a, b, **EXACT)
        anchors = model.rpn.anchor_generator(ImageList(x, [(96, 160)]), ours)[0]
        priors = torch.cat(mm.rpn_head.prior_generator.grid_priors([f.shape[2:] for f in theirs], device="cpu"))
        torch.testing.assert_close(anchors, priors, **EXACT)
        torchvisions = AnchorGenerator(model.rpn.anchor_generator.sizes, model.rpn.anchor_generator.aspect_ratios)
        assert (torchvisions(ImageList(x, [(96, 160)]), ours)[0] - priors).abs().max() > 1  # the stride-64 level's
        rois7, rois14 = torch.randn(6, 256, 7, 7, generator=g), torch.randn(6, 256, 14, 14, generator=g)
        scores, box_deltas = model.roi_heads.box_predictor(model.roi_heads.box_head(rois7))
        mm_scores, mm_deltas = mm.roi_head.bbox_head(rois7)
        torch.testing.assert_close(scores[:, 1:], mm_scores[:, :-1], **EXACT)  # background: torchvision's first
        torch.testing.assert_close(scores[:, 0], mm_scores[:, -1], **EXACT)
        per_class = box_deltas[:, 4:].reshape(6, len(CLASSES), 4)
        mm_per_class = mm_deltas.reshape(6, -1, 4).expand_as(per_class)  # class-agnostic: one slot for all
        torch.testing.assert_close(per_class, mm_per_class, **EXACT)
        boxes = torch.tensor([[10.0, 12.0, 60.0, 90.0]]).repeat(6, 1)
        decoded = model.roi_heads.box_coder.decode_single(box_deltas[:, 4:8], boxes)
        torch.testing.assert_close(decoded, mm.roi_head.bbox_head.bbox_coder.decode(boxes, mm_deltas[:, :4]),
                                   rtol=0, atol=1e-4)
        masks = model.roi_heads.mask_predictor(model.roi_heads.mask_head(rois14))[:, 1:]
        mm_masks = mm.roi_head.mask_head(rois14)
        torch.testing.assert_close(masks, mm_masks.expand_as(masks), **EXACT)


def test_imported_detector_gives_mmdets_detections(mmdet_run):
    imagenet, mm, _, model = mmdet_run
    assert (model.cfg.anchors, model.cfg.mask_paste) == ("mmdet", "mmdet")
    image = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(2))  # the import's --img-size
    mean, std = (torch.tensor(IMAGENET[k]).view(3, 1, 1) / 255 for k in ("mean", "std"))
    x = (image - mean) / std if imagenet else model.transform.normalize(image)  # as mmdet's data_preprocessor
    theirs = mmdet_predict(mm, x[None])[0]
    with torch.no_grad():
        ours = model([image])[0]
    assert len(theirs["boxes"]) > 50
    torch.testing.assert_close(ours["boxes"], theirs["boxes"], rtol=0, atol=1e-4)
    torch.testing.assert_close(ours["scores"], theirs["scores"], rtol=0, atol=1e-5)
    assert torch.equal(ours["labels"], theirs["labels"] + 1)
    flipped = (ours["masks"][:, 0] >= 0.5) != theirs["masks"]  # mmdet's binary masks: >= mask_thr_binary
    assert flipped.sum() <= 1e-5 * flipped.numel()  # pixels a hair from 0.5 may fall either way


@pytest.mark.slow
def test_imported_detector_exports_to_onnx_with_parity(mmdet_run, synth_det_data, tmp_path):
    """mmdet's anchors and mask pasting traced into the full ONNX graph, which gives the model's detections."""
    agnostic, _, path, _ = mmdet_run
    ckpt = path.parent / "imported.ckpt"
    out = tmp_path / "exports"
    assert main(["export", "onnx", "--checkpoint", str(ckpt), "--data", str(synth_det_data), "--img-size", "64",
                 "--out", str(out), "--json", str(out / "report.json")]) == 0
    (r,) = json.loads((out / "report.json").read_text())
    assert r["status"] == "ok" and r["graph"] == "full" and r["parity"]["passed"], r
    assert r["parity"]["detections"] > 0 and r["parity"]["mask_agreement"] >= 0.999, r
    sidecar = read_sidecar(out / r["artifact"])
    assert sidecar["class_names"] == CLASSES and sidecar["palette"] == PALETTE  # the file's own


def test_mcq_detector_goes_to_mmdet_and_back_with_the_same_detections(capsys, tmp_path):
    cfg = DetModelConfig("mci0", len(CLASSES), img_size=128)
    task = DetTask(asdict(cfg), CLASSES, [1, 2, 3], asdict(load_recipe("det", "maskrcnn")))
    randomize_(task.model, seed=6).eval()
    src = tmp_path / "mcq.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}, src)
    rc, stdout, err = _cli(capsys, ["export", "mmdet", "--checkpoint", src, "--out", tmp_path / "mm.pth"])
    assert rc == 0 and "'type': 'FPN'" in stdout, err
    raw = torch.load(tmp_path / "mm.pth", weights_only=True)
    mmdet_mask_rcnn("fastvit_mci0", len(CLASSES)).load_state_dict(raw["state_dict"], strict=True)
    assert list(raw["meta"]["dataset_meta"]["classes"]) == CLASSES
    rc, _, err = _cli(capsys, ["import", "mmdet", tmp_path / "mm.pth", "--out", tmp_path / "back.ckpt",
                               "--img-size", 128])
    assert rc == 0, err
    back = read_checkpoint(tmp_path / "back.ckpt", "det").model
    for m in (task.model, back):
        m.roi_heads.score_thresh = 0.0  # keep every box, so that there is much to compare
    image = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        (a,), (b,) = task.model([image]), back([image])
    assert len(a["boxes"]) > 10
    for key in ("boxes", "labels", "scores", "masks"):
        assert torch.equal(a[key], b[key]), key


def test_a_segmentation_checkpoint_is_not_taken_for_a_detector(capsys, tmp_path):
    torch.save({"state_dict": {"decode_head.conv_seg.weight": torch.zeros(2, 8, 1, 1)}}, tmp_path / "seg.pth")
    rc, _, err = _cli(capsys, ["import", "mmdet", tmp_path / "seg.pth", "--out", tmp_path / "x.ckpt"])
    assert rc == 2 and "seg.pth: not a Mask R-CNN checkpoint" in err and not (tmp_path / "x.ckpt").exists()


def _benchmark():
    spec = importlib.util.spec_from_file_location("mmdet_roi_align", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mmdet_roi_align_is_mmcvs_aligned_adaptive_pooling_on_torchvisions_levels():
    g = torch.Generator().manual_seed(0)
    feats = OrderedDict([("0", torch.randn(1, 8, 32, 32, generator=g)), ("1", torch.randn(1, 8, 16, 16, generator=g))])
    boxes = [torch.tensor([[3.3, 4.1, 40.7, 52.2], [4.0, 6.0, 124.0, 126.0]])]  # sqrt(area) 42 -> level 0, 120 -> 1
    rois = torch.cat([torch.zeros(2, 1), boxes[0]], 1)
    pooled = MMDetRoIAlign(["0", "1"], 7)(feats, boxes, [(128, 128)])
    torch.testing.assert_close(pooled[:1], roi_align(feats["0"], rois[:1], 7, 0.25, 0, aligned=True))
    torch.testing.assert_close(pooled[1:], roi_align(feats["1"], rois[1:], 7, 0.125, 0, aligned=True))
    plain = MultiScaleRoIAlign(["0", "1"], 7, 2)(feats, boxes, [(128, 128)])
    assert not torch.allclose(plain, pooled)


def test_roi_align_benchmark_matches_detections_by_class_and_iou():
    bench = _benchmark()
    a = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([1, 2]),
         "scores": torch.tensor([0.9, 0.8])}
    shifted = {**a, "boxes": a["boxes"] + torch.tensor([1.0, 0, 1, 0]), "scores": torch.tensor([0.7, 0.8])}
    assert bench.match(a, a, 0.9) == (2, 2.0, 0.0)
    n, iou_sum, gap = bench.match(a, shifted, 0.5)
    assert n == 2 and iou_sum == pytest.approx(2 * 90 / 110) and gap == pytest.approx(0.2)
    assert bench.match(a, {**a, "labels": torch.tensor([2, 1])}, 0.5)[0] == 0  # another class is no partner
