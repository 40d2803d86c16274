"""Detection and instance segmentation: the COCO loader (polygons, uncompressed and compressed RLE, crowd regions,
category ids with gaps), the synthetic COCO data, Mask R-CNN forward/backward, COCO's AP against hand-computed
answers, the recipe of Table 13, and a tiny train + eval through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from conftest import tiny_argv
from mcq.cli import main
from mcq.data import DET_CLASSES, COCODetection, DetTransform, collate_det
from mcq.data.coco import annotation_file, uncompressed_rle
from mcq.tasks.metrics import COCO_KEYS, coco_metrics, coco_results
from mcq.train.module import warmup_step
from mcq.train.config import TrainConfig
from mcq.train.train import resolve_recipe
from mcq.errors import McqError
from mcq.models.detector import DetModel, DetModelConfig
from mcq.recipes import load_recipe

SMALL = dict(fpn_channels=32, roi_batch_size=16)  # a Mask R-CNN cheap enough for a test


def _rect(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def _compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def write_coco(root: Path, split: str, images: list[tuple[int, int, int]], annotations: list[dict],
               categories: list[tuple[int, str]]) -> Path:
    """A COCO dataset in the official layout: ``images`` as (id, width, height), random pixels."""
    folder = root / f"{split}2017"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    entries = []
    for image_id, w, h in images:
        name = f"{image_id:012d}.jpg"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / name)
        entries.append({"id": image_id, "file_name": name, "width": w, "height": h})
    for i, a in enumerate(annotations, 1):
        a.setdefault("id", i)
        a.setdefault("iscrowd", 0)
        a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
    path = annotation_file(root, split)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"images": entries, "annotations": annotations,
                                "categories": [{"id": c, "name": n, "supercategory": "x"} for c, n in categories]}))
    return path


# --- the loader ------------------------------------------------------------------------------------------------


H, W = 30, 40
DOG_RLE = _rect(H, W, 20, 2, 35, 10)  # uncompressed RLE
DOG_CRLE = _rect(H, W, 22, 15, 38, 28)  # compressed RLE
CROWD = _rect(H, W, 0, 22, 10, 30)


def _hand_made(root: Path) -> None:
    anns = [
        {"image_id": 7, "category_id": 3, "bbox": [5, 5, 10, 15], "segmentation": [[5, 5, 15, 5, 15, 20, 5, 20]]},
        {"image_id": 7, "category_id": 17, "bbox": [20, 2, 15, 8], "segmentation": uncompressed_rle(DOG_RLE)},
        {"image_id": 7, "category_id": 17, "bbox": [22, 15, 16, 13], "segmentation": _compressed_rle(DOG_CRLE)},
        {"image_id": 7, "category_id": 3, "bbox": [0, 22, 10, 8], "segmentation": uncompressed_rle(CROWD), "iscrowd": 1},
    ]
    for split in ("train", "val"):  # image 9 has no annotation
        write_coco(root, split, [(7, W, H), (9, W, H)], [dict(a) for a in anns], [(17, "dog"), (3, "cat")])


def test_loader_reads_polygons_and_both_rle_forms(tmp_path):
    _hand_made(tmp_path)
    ds = COCODetection(tmp_path, "train")
    assert ds.category_ids == [3, 17] and ds.class_names == ["cat", "dog"]  # sorted by id, labels 1..K
    assert ds.ids == [7]  # training skips the image without boxes
    image, t = ds[0]
    assert image.size == (W, H) and t["image_id"] == 7
    assert t["labels"].tolist() == [1, 2, 2]  # the crowd region is not a target
    assert t["boxes"].tolist() == [[5, 5, 15, 20], [20, 2, 35, 10], [22, 15, 38, 28]]
    assert t["masks"].shape == (3, H, W) and t["masks"].dtype == torch.uint8
    np.testing.assert_array_equal(t["masks"][0].numpy(), _rect(H, W, 5, 5, 15, 20))  # the polygon's pixels
    np.testing.assert_array_equal(t["masks"][1].numpy(), DOG_RLE)
    np.testing.assert_array_equal(t["masks"][2].numpy(), DOG_CRLE)
    val = COCODetection(tmp_path, "val")
    assert val.ids == [7, 9]  # validation keeps every image
    _, empty = val[1]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, H, W)


def test_transforms_keep_boxes_and_masks_together(synth_det_data):
    val = COCODetection(synth_det_data, "val", DetTransform(64, False))
    image, t = val[0]
    assert image.dtype == torch.float32 and 0 <= float(image.min()) and float(image.max()) <= 1
    raw = COCODetection(synth_det_data, "val")[0][1]
    assert torch.equal(t["boxes"], raw["boxes"]) and torch.equal(t["masks"], raw["masks"])  # val: as it is
    train = COCODetection(synth_det_data, "train", DetTransform(48, True, (0.5, 2.0)))
    torch.manual_seed(0)
    for i in range(len(train)):
        image, t = train[i]
        assert image.shape == (3, 48, 48)
        assert len(t["boxes"]) == len(t["labels"]) == len(t["masks"])
        for box, mask in zip(t["boxes"], t["masks"]):
            assert 0 <= box[0] < box[2] <= 48 and 0 <= box[1] < box[3] <= 48
            ys, xs = torch.nonzero(mask, as_tuple=True)
            if len(xs):  # the mask lies in its box (up to the resampling's pixel)
                assert xs.min() >= box[0] - 1 and xs.max() <= box[2] and ys.min() >= box[1] - 1 and ys.max() <= box[3]
    images, targets = collate_det([train[0], train[1]])
    assert len(images) == len(targets) == 2


def test_synth_det_is_coco_with_polygons_and_rle(synth_det_data):
    for split, n in (("train", 6), ("val", 3)):
        coco = COCO(str(annotation_file(synth_det_data, split)))
        assert len(coco.imgs) == n and [c["name"] for c in coco.loadCats(coco.getCatIds())] == DET_CLASSES
        for a in coco.anns.values():
            mask = coco.annToMask(a)
            assert mask.sum() == a["area"] > 0
            ys, xs = np.nonzero(mask)
            assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    kinds = {type(a["segmentation"]).__name__ for a in COCO(str(annotation_file(synth_det_data, "train"))).anns.values()}
    assert kinds == {"list", "dict"}  # polygons, and RLE for the rings


def test_cli_synth_writes_the_coco_layout(capsys, tmp_path):
    out = tmp_path / "coco"
    assert main(["data", "synth", "det", "--out", str(out), "--train", "3", "--val", "2", "--size", "48"]) == 0
    assert f"wrote 3 training + 2 validation images to {out} (COCO layout)" in capsys.readouterr().out
    assert len(list((out / "train2017").glob("*.jpg"))) == 3 and (out / "annotations" / "instances_val2017.json").is_file()
    assert len(COCODetection(out, "val")) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["coco"]


# --- the model ---------------------------------------------------------------------------------------------------


def test_mask_rcnn_forward_backward_and_predictions_in_image_pixels(synth_det_data):
    torch.manual_seed(0)
    model = DetModel(DetModelConfig("mci0", num_classes=4, img_size=64, **SMALL))
    ds = COCODetection(synth_det_data, "train", DetTransform(64, True))
    images, targets = collate_det([ds[0], ds[1]])
    losses = model(images, [{k: t[k] for k in ("boxes", "labels", "masks")} for t in targets])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    assert next(model.encoder.trunk.stem.parameters()).grad.abs().sum() > 0  # through the encoder
    assert model.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():  # any size in, answers in that image's own pixels
        preds = model([torch.rand(3, 50, 90), torch.rand(3, 64, 64)])
    assert preds[0]["masks"].shape[1:] == (1, 50, 90) and preds[1]["masks"].shape[1:] == (1, 64, 64)
    assert (preds[0]["boxes"][:, 0::2] <= 90).all() and (preds[0]["boxes"][:, 1::2] <= 50).all()
    assert model.transform.min_size == (64,) and model.transform.max_size == 64  # the long side becomes 64


def test_vit_detector_uses_the_simple_feature_pyramid():
    model = DetModel(DetModelConfig("vit_b16", num_classes=2, img_size=64, **SMALL)).eval()
    assert model.backbone.fpn is None and model.backbone.out_channels == 256
    feats = model.backbone(torch.rand(1, 3, 64, 64))
    assert list(feats) == ["0", "1", "2", "3", "pool"]
    assert [f.shape[-1] for f in feats.values()] == [16, 8, 4, 2, 1]


# --- COCO's AP against hand computations ------------------------------------------------------------------------

# Two images, two categories (ids 1 and 5, labels 1 and 2), masks the same rectangles as the boxes:
#   image 1: a small "a" (20x20 at 10,10), found exactly (score .9); a small false "a" elsewhere (score .8)
#   image 2: a medium "b" (40x40 at 20,20), found as its top 40x25 part: IoU 1000/1600 = .625 (score .7)
GT_A, FALSE_A, GT_B, PART_B = (10, 10, 30, 30), (60, 60, 80, 80), (20, 20, 60, 60), (20, 20, 60, 45)
SIZE = 100


def _coco(images: list[int], categories: dict[int, str], anns: list[tuple[int, int, tuple, np.ndarray]]) -> COCO:
    """A ground truth in memory: ``anns`` as (image id, category id, box xyxy, mask)."""
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "width": SIZE, "height": SIZE, "file_name": f"{i}.jpg"} for i in images],
        "categories": [{"id": c, "name": n} for c, n in categories.items()],
        "annotations": [{"id": k, "image_id": i, "category_id": c, "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "area": float(mask.sum()), "iscrowd": 0, "segmentation": uncompressed_rle(mask)}
                        for k, (i, c, (x0, y0, x1, y1), mask) in enumerate(anns, 1)],
    }
    coco.createIndex()
    return coco


def _gt() -> COCO:
    return _coco([1, 2], {1: "a", 5: "b"}, [(1, 1, GT_A, _rect(SIZE, SIZE, *GT_A)), (2, 5, GT_B, _rect(SIZE, SIZE, *GT_B))])


def _pred(boxes: list[tuple], labels: list[int], scores: list[float]) -> dict:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels),
            "scores": torch.tensor(scores),
            "masks": torch.stack([torch.from_numpy(_rect(SIZE, SIZE, *b)).float()[None] * 0.9 for b in boxes])}


def _results(preds: dict[int, dict]) -> list[dict]:
    return [r for image_id, p in preds.items() for r in coco_results(p, image_id, [1, 5])]


def test_coco_results_are_coco_entries():
    (r,) = _results({2: _pred([PART_B], [2], [0.7])})
    assert r["image_id"] == 2 and r["category_id"] == 5 and r["bbox"] == [20, 20, 40, 25] and r["score"] == pytest.approx(0.7)
    np.testing.assert_array_equal(mask_utils.decode(r["segmentation"]), _rect(SIZE, SIZE, *PART_B))


def test_perfect_predictions_score_one():
    m = coco_metrics(_gt(), _results({1: _pred([GT_A], [1], [0.9]), 2: _pred([GT_B], [2], [0.6])}), [1, 2])
    for t in ("bbox", "segm"):
        assert [m[t][k] for k in COCO_KEYS[:5]] == pytest.approx([1.0] * 5)  # AP, AP50, AP75, APs, APm
        assert m[t]["APl"] is None  # no large object: COCOeval's -1
        assert m[t]["per_class"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    assert m["images"] == 2


def test_a_known_mix_of_hits_and_misses():
    # "a": the true detection outranks the false one, so precision is 1 at recall 1 -> AP 1 at every IoU.
    # Swap the scores and the false detection comes first: precision 1/2 at recall 1 -> AP .5 at every IoU.
    # "b": IoU .625 is a hit at the thresholds .50, .55, .60 and a miss at .65 ... .95 -> AP 3/10, AP50 1, AP75 0.
    gt = _gt()
    for score_true, score_false, ap_a in ((0.9, 0.8, 1.0), (0.8, 0.9, 0.5)):
        preds = {1: _pred([GT_A, FALSE_A], [1, 1], [score_true, score_false]), 2: _pred([PART_B], [2], [0.7])}
        m = coco_metrics(gt, _results(preds), [1, 2])
        for t in ("bbox", "segm"):  # the masks are the boxes' rectangles: the same answers
            assert m[t]["per_class"]["a"] == pytest.approx(ap_a)
            assert m[t]["per_class"]["b"] == pytest.approx(0.3)
            assert m[t]["AP"] == pytest.approx((ap_a + 0.3) / 2)
            assert m[t]["AP50"] == pytest.approx((ap_a + 1.0) / 2)
            assert m[t]["AP75"] == pytest.approx((ap_a + 0.0) / 2)
            assert (m[t]["APs"], m[t]["APm"]) == (pytest.approx(ap_a), pytest.approx(0.3))  # "a" small, "b" medium


def test_a_missed_object_and_nothing_detected():
    # only "a" found: "b" has AP 0 -> mean 1/2; nothing at all: 0 everywhere a ground truth exists
    m = coco_metrics(_gt(), _results({1: _pred([GT_A], [1], [0.9])}), [1, 2])
    assert m["bbox"]["AP"] == pytest.approx(0.5) and m["segm"]["per_class"]["b"] == 0.0
    none = coco_metrics(_gt(), [], [1, 2])
    assert all(none[t][k] == 0.0 for t in ("bbox", "segm") for k in COCO_KEYS[:5]) and none["bbox"]["APl"] is None


def test_mask_ap_sizes_objects_by_mask_area():
    # a thin diagonal object whose box is medium (40x40) but whose mask is small (under 32^2 pixels)
    diag = np.zeros((SIZE, SIZE), np.uint8)
    for k in range(40):
        diag[20 + k, 20 + k] = 1
    gt = _coco([1], {1: "a"}, [(1, 1, (20, 20, 60, 60), diag)])
    pred = {"boxes": torch.tensor([[20.0, 20, 60, 60]]), "labels": torch.tensor([1]), "scores": torch.tensor([0.9]),
            "masks": torch.from_numpy(diag).float()[None, None]}
    m = coco_metrics(gt, coco_results(pred, 1, [1]), [1])
    assert m["segm"]["APs"] == pytest.approx(1.0) and m["segm"]["APm"] is None


# --- recipe, schedule, options ------------------------------------------------------------------------------------


def test_recipe_is_the_papers_table_13():
    r = load_recipe("det", "maskrcnn")
    assert (r.epochs, r.lr_steps, r.lr_gamma, r.batch_size, r.weight_decay) == (12, [8, 11], 0.1, 16, 0.1)
    assert (r.fpn_channels, r.roi_batch_size, r.schedule) == (256, 512, "step")
    full = r.resolve(steps_per_epoch=100)
    assert (full.max_steps, full.val_every) == (1200, 100)
    short = resolve_recipe(TrainConfig(task="det", max_steps=120, roi_batch_size=64)).resolve(steps_per_epoch=100)
    assert (short.max_steps, short.roi_batch_size, short.fpn_channels) == (120, 64, 256)


def test_step_schedule_drops_at_epochs_8_and_11_of_12():
    mult = [warmup_step(s, 1200, 10, [8 / 12, 11 / 12], 0.1) for s in range(1200)]
    assert mult[0] == pytest.approx(0.1) and mult[9] == 1.0 and mult[799] == 1.0
    assert mult[800] == pytest.approx(0.1) and mult[1099] == pytest.approx(0.1) and mult[1100] == pytest.approx(0.01)


@pytest.mark.parametrize("task, option", [("seg", "roi_batch_size"), ("cls", "layer_decay")])
def test_options_of_another_task_are_refused(task, option):
    with pytest.raises(McqError, match=f"--{option.replace('_', '-')}: the {task} recipe has no such setting"):
        resolve_recipe(TrainConfig(task=task, **{option: 1}))


# --- end to end ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_det_run(synth_det_data, tmp_path_factory) -> Path:
    """A finished two-step run on the tiny synthetic COCO, through the CLI."""
    out = tmp_path_factory.mktemp("runs") / "det-mci0"
    assert main(tiny_argv("det", synth_det_data, out) + ["--fpn-channels", "32", "--roi-batch-size", "16"]) == 0
    return out


def test_tiny_train_and_eval_through_the_cli(capsys, synth_det_data, tiny_det_run, tmp_path):
    out = tiny_det_run
    for f in ("config.json", "metrics.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt", "logs/metrics.csv"):
        assert (out / f).is_file(), f
    trained = json.loads((out / "metrics.json").read_text())
    assert trained["step"] == 2 and trained["images"] == 3
    for t in ("bbox", "segm"):
        assert set(COCO_KEYS) <= set(trained[t]) and set(trained[t]["per_class"]) == set(DET_CLASSES)
        assert all(trained[t][k] is None or 0.0 <= trained[t][k] <= 1.0 for k in COCO_KEYS)
    config = json.loads((out / "config.json").read_text())
    assert config["category_ids"] == [1, 2, 3, 4] and config["model"]["roi_batch_size"] == 16

    js = tmp_path / "eval.json"
    capsys.readouterr()
    argv = ["eval", "det", "--checkpoint", str(out / "checkpoints" / "last.ckpt"), "--data", str(synth_det_data),
            "--workers", "0", "--json", str(js)]
    assert main(argv) == 0
    assert "mask AP" in capsys.readouterr().out
    evaluated = json.loads(js.read_text())
    for t in ("bbox", "segm"):  # the same checkpoint on the same images: the same figures
        for k in COCO_KEYS:
            assert evaluated[t][k] == (None if trained[t][k] is None else pytest.approx(trained[t][k], abs=1e-6))
    assert main(argv + ["--img-size", "96"]) == 0  # another size: the model resizes the images to it
    assert json.loads(js.read_text())["img_size"] == 96


def test_eval_on_other_categories_is_refused(capsys, tiny_det_run, tmp_path):
    other = tmp_path / "other"
    _hand_made(other)
    capsys.readouterr()
    rc = main(["eval", "det", "--checkpoint", str(tiny_det_run / "checkpoints" / "last.ckpt"), "--data", str(other),
               "--workers", "0"])
    assert rc == 2 and "instances_val2017.json: categories [3, 17] differ" in capsys.readouterr().err
