"""The ADE20K loader (class names, label shift, transforms, image modes) and `mcq data synth seg`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mcq.cli import main
from mcq.data import ADE20K, IGNORE_INDEX, SEG_CLASSES, SegTransform, ade20k_class_names, read_class_names

MEAN, STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def _write_pair(root: Path, split: str, name: str, image: Image.Image, mask: np.ndarray, suffix: str = ".jpg") -> None:
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
    image.save(root / "images" / split / f"{name}{suffix}")
    Image.fromarray(mask.astype(np.uint8)).save(root / "annotations" / split / f"{name}.png")


def _write_object_info(root: Path, names: list[str]) -> None:
    """objectInfo150.txt as ADEChallengeData2016 ships it: a header, then tab-separated rows."""
    rows = ["Idx\tRatio\tTrain\tVal\tName"]
    rows += [f"{i + 1}\t0.{i + 1:04d}\t{100 + i}\t{10 + i}\t{n}" for i, n in enumerate(names)]
    (root / "objectInfo150.txt").write_text("\n".join(rows) + "\n")


def _rgb(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


# --- class names -------------------------------------------------------------------------------


def test_class_names_come_from_object_info_first_synonym(tmp_path):
    names = ["wall;partition", "building;edifice", "sky", "floor;flooring", "pot;flowerpot"]
    _write_object_info(tmp_path, names)
    _write_pair(tmp_path, "training", "a", _rgb(8, 8), np.ones((8, 8)))
    expected = ["wall", "building", "sky", "floor", "pot"]
    assert read_class_names(tmp_path) == expected
    ds = ADE20K(tmp_path, "training")
    assert ds.class_names == expected and ds.num_classes == 5


def test_without_object_info_the_150_ade20k_names_are_used(tmp_path):
    _write_pair(tmp_path, "training", "a", _rgb(8, 8), np.ones((8, 8)))
    ds = ADE20K(tmp_path, "training")
    assert len(ds.class_names) == 150 == ds.num_classes
    assert ds.class_names[0] == "wall" and ds.class_names[-1] == "flag"
    assert ds.class_names == ade20k_class_names()
    assert all(n and n == n.strip() for n in ds.class_names)


def test_synth_class_names_round_trip(synth_data):
    assert ADE20K(synth_data, "validation").class_names == SEG_CLASSES


# --- labels ------------------------------------------------------------------------------------


def test_labels_are_shifted_and_zero_becomes_ignore(tmp_path):
    _write_object_info(tmp_path, ["a", "b", "c"])
    mask = np.array([[0, 1, 2, 3, 255, 0]], np.uint8).repeat(4, axis=0)
    _write_pair(tmp_path, "validation", "x", _rgb(6, 4), mask)
    _, out = ADE20K(tmp_path, "validation")[0]
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], [IGNORE_INDEX, 0, 1, 2, IGNORE_INDEX, IGNORE_INDEX])
    # with the validation transform the same labels come back as a long tensor
    _, t = ADE20K(tmp_path, "validation", SegTransform(32, False, MEAN, STD))[0]
    assert t.dtype == torch.long
    assert t[0].tolist() == [255, 0, 1, 2, 255, 255]


def test_synth_masks_hold_only_known_classes_or_ignore(synth_data):
    ds = ADE20K(synth_data, "training")
    for i in range(len(ds)):
        _, m = ds[i]
        vals = set(np.unique(m).tolist())
        assert vals <= set(range(len(SEG_CLASSES))) | {IGNORE_INDEX}
        assert IGNORE_INDEX in vals  # the unlabelled band (label 0) is ignored


# --- transforms --------------------------------------------------------------------------------


def test_train_transform_gives_fixed_size_tensors(synth_data):
    ds = ADE20K(synth_data, "training", SegTransform(32, True, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    torch.manual_seed(0)
    for i in range(len(ds)):
        img, mask = ds[i]
        assert img.shape == (3, 32, 32) and img.dtype == torch.float32
        assert mask.shape == (32, 32) and mask.dtype == torch.long
        assert type(img) is torch.Tensor and type(mask) is torch.Tensor  # plain tensors, not tv_tensors
        assert set(mask.unique().tolist()) <= set(range(len(SEG_CLASSES))) | {IGNORE_INDEX}


def test_validation_keeps_the_mask_at_its_original_size(tmp_path):
    _write_object_info(tmp_path, ["a", "b", "c"])
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 4, (24, 40))
    _write_pair(tmp_path, "validation", "x", _rgb(40, 24), mask)
    img, out = ADE20K(tmp_path, "validation", SegTransform(32, False, MEAN, STD))[0]
    assert img.shape == (3, 32, 32)
    assert out.shape == (24, 40)
    expected = np.where(mask == 0, IGNORE_INDEX, mask - 1)
    np.testing.assert_array_equal(out.numpy(), expected)


# --- image modes -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,suffix", [("L", ".jpg"), ("RGBA", ".png"), ("P", ".png"), ("RGB", ".png")])
def test_grayscale_and_rgba_images_load_as_three_channels(tmp_path, mode, suffix):
    _write_object_info(tmp_path, ["a", "b"])
    _write_pair(tmp_path, "training", "x", _rgb(16, 16).convert(mode), np.ones((16, 16)), suffix)
    image, _ = ADE20K(tmp_path, "training")[0]
    assert image.mode == "RGB" and image.size == (16, 16)
    for train in (True, False):
        img, mask = ADE20K(tmp_path, "training", SegTransform(32, train, MEAN, STD))[0]
        assert img.shape == (3, 32, 32)


# --- mcq data synth seg ------------------------------------------------------------------------


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _synth(capsys, out: Path, seed: int) -> None:
    argv = ["data", "synth", "seg", "--out", str(out), "--train", "3", "--val", "2", "--size", "32", "--seed", str(seed)]
    assert main(argv) == 0
    assert f"wrote 3 training + 2 validation images to {out}" in capsys.readouterr().out


def test_cli_synth_writes_the_ade20k_layout(tmp_path, capsys):
    out = tmp_path / "synth"
    _synth(capsys, out, seed=0)
    assert (out / "objectInfo150.txt").is_file()
    assert read_class_names(out) == SEG_CLASSES
    for split, n in (("training", 3), ("validation", 2)):
        images = sorted((out / "images" / split).glob("*.jpg"))
        masks = sorted((out / "annotations" / split).glob("*.png"))
        assert len(images) == n and [p.stem for p in images] == [p.stem for p in masks]
        with Image.open(images[0]) as im:
            assert im.mode == "RGB" and im.size == (32, 32)
        with Image.open(masks[0]) as m:
            assert m.mode == "L" and m.size == (32, 32)
            assert np.array(m).max() <= len(SEG_CLASSES)
        assert len(ADE20K(out, split)) == n
    # nothing else: no staging folder left beside it
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]


def test_cli_synth_is_deterministic_for_a_seed(tmp_path, capsys):
    _synth(capsys, tmp_path / "a", seed=3)
    _synth(capsys, tmp_path / "b", seed=3)
    _synth(capsys, tmp_path / "c", seed=4)
    a, b, c = (_digest(tmp_path / x) for x in "abc")
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_cli_synth_replaces_an_existing_folder(tmp_path, capsys):
    out = tmp_path / "synth"
    _synth(capsys, out, seed=0)
    (out / "stale.txt").write_text("old")
    _synth(capsys, out, seed=0)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]
