"""Bad input: a one-line error naming the file, exit code 2, and no half-written run directory.

The CLI is driven in-process (``mcq.cli.main``); ``capsys`` holds what it printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_argv
from mcq.cli import main
from mcq.data.nyu import TRAIN_LIST
from mcq.errors import McqError


def _cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()  # drop what fixtures printed
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_one_line_error(rc: int, err: str, *needles) -> str:
    assert rc == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), f"stderr is not one line:\n{err}"
    line = err.rstrip("\n")
    assert line.startswith("mcq: error: "), line
    assert "Traceback" not in line and "Original" not in line, line
    assert len(line) < 600, f"a one-line error should be readable, got {len(line)} characters: {line[:800]}"
    for needle in needles:
        assert str(needle) in line, f"{needle!s} not in {line!r}"
    return line


def _train(capsys, tiny_train_argv, data, out: Path, *extra) -> tuple[int, str, str]:
    return _cli(capsys, ["train", "seg", *tiny_train_argv, "--data", data, "--out", out, *extra])


def _keep_only(data: Path, split: str, n: int) -> list[Path]:
    """Drop all but the first ``n`` images (and masks) of ``split``, so one batch holds every image."""
    images = sorted((data / "images" / split).iterdir())
    for p in images[n:]:
        p.unlink()
        (data / "annotations" / split / f"{p.stem}.png").unlink()
    return images[:n]


def _no_run_left(out: Path) -> None:
    assert not out.exists(), f"half-written run left: {sorted(p.name for p in out.rglob('*'))}"
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    assert not leftovers, leftovers


# --- datasets ----------------------------------------------------------------------------------


def test_missing_data_folder(capsys, tmp_path, tiny_train_argv):
    data, out = tmp_path / "no-such-data", tmp_path / "run"
    rc, _, err = _train(capsys, tiny_train_argv, data, out)
    _assert_one_line_error(rc, err, data)
    _no_run_left(out)


def test_image_without_mask(capsys, tmp_path, tiny_train_argv, data_copy):
    image = sorted((data_copy / "images" / "training").iterdir())[2]
    mask = data_copy / "annotations" / "training" / f"{image.stem}.png"
    mask.unlink()
    out = tmp_path / "run"
    rc, _, err = _train(capsys, tiny_train_argv, data_copy, out)
    _assert_one_line_error(rc, err, image, mask)
    _no_run_left(out)


@pytest.mark.parametrize("workers", [0, 1])
def test_mask_label_outside_the_classes(capsys, tmp_path, tiny_train_argv, data_copy, workers):
    # found lazily, while a batch is loaded (in a DataLoader worker when --workers > 0)
    good, bad = _keep_only(data_copy, "training", 2)
    ann = data_copy / "annotations" / "training"
    m = np.array(Image.open(ann / f"{good.stem}.png"))
    m[:4, :4], m[4:8, :4] = 255, 8  # 255 (ignore) and the last class are fine
    Image.fromarray(m).save(ann / f"{good.stem}.png")
    bad_mask = ann / f"{bad.stem}.png"
    m = np.array(Image.open(bad_mask))
    m[10:12, 10:12] = 9  # 8 classes: 9 is outside
    Image.fromarray(m).save(bad_mask)
    out = tmp_path / "run"
    rc, _, err = _train(capsys, tiny_train_argv, data_copy, out, "--workers", workers)
    line = _assert_one_line_error(rc, err, bad_mask, "label 9")
    assert "McqError" not in line and "worker" not in line
    _no_run_left(out)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_unreadable_or_truncated_jpeg(capsys, tmp_path, tiny_train_argv, data_copy, damage):
    _, bad = _keep_only(data_copy, "training", 2)
    raw = bad.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"this is not a jpeg" * 10)
    out = tmp_path / "run"
    rc, _, err = _train(capsys, tiny_train_argv, data_copy, out)
    _assert_one_line_error(rc, err, bad)
    _no_run_left(out)


def test_grayscale_and_rgba_images_train(capsys, tmp_path, tiny_train_argv, data_copy):
    for split in ("training", "validation"):
        gray, rgba = _keep_only(data_copy, split, 2)
        Image.open(gray).convert("L").save(gray)  # a mode-L JPEG
        Image.open(rgba).convert("RGBA").save(rgba.with_suffix(".png"))
        rgba.unlink()
    out = tmp_path / "run"
    rc, stdout, err = _train(capsys, tiny_train_argv, data_copy, out)
    assert rc == 0, err
    assert "mcq: error" not in err
    assert (out / "metrics.json").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    assert f"run written to {out}" in stdout


# --- depth (NYUv2 layout) and classification (ImageNet folders) ----------------------------------


def _keep_train_frames(nyu: Path, n: int) -> list[Path]:
    """Cut the train list to its first ``n`` frames (one batch) and return their depth PNGs."""
    listing = nyu / TRAIN_LIST
    lines = listing.read_text().splitlines()[:n]
    listing.write_text("\n".join(lines) + "\n")
    return [nyu / "sync" / line.split()[1].lstrip("/") for line in lines]


def test_depth_png_of_the_wrong_bit_depth(capsys, tmp_path, copy_of):
    nyu = copy_of("synth_depth_data")
    _, bad = _keep_train_frames(nyu, 2)
    Image.fromarray((np.array(Image.open(bad)) // 256).astype(np.uint8)).save(bad)  # an 8-bit PNG
    out = tmp_path / "run"
    rc, _, err = _cli(capsys, tiny_argv("depth", nyu, out))
    _assert_one_line_error(rc, err, bad, "16-bit")
    _no_run_left(out)


@pytest.mark.parametrize("damage", ["missing", "empty"])
def test_train_file_list_missing_or_empty(capsys, tmp_path, copy_of, damage):
    nyu = copy_of("synth_depth_data")
    listing = nyu / TRAIN_LIST
    if damage == "missing":
        listing.unlink()
    else:
        listing.write_text("\n")
    out = tmp_path / "run"
    rc, _, err = _cli(capsys, tiny_argv("depth", nyu, out))
    _assert_one_line_error(rc, err, listing)
    _no_run_left(out)


def test_test_frame_without_depth(capsys, tmp_path, copy_of):
    nyu = copy_of("synth_depth_data")
    depth = sorted((nyu / "official_splits" / "test").rglob("sync_depth_*.png"))[1]
    depth.unlink()
    out = tmp_path / "run"
    rc, _, err = _cli(capsys, tiny_argv("depth", nyu, out))
    _assert_one_line_error(rc, err, depth)
    _no_run_left(out)


@pytest.mark.parametrize("split", ["train", "val"])
def test_empty_class_folder(capsys, tmp_path, copy_of, split):
    cls = copy_of("synth_cls_data")
    folder = cls / split / "ring"
    for p in folder.iterdir():
        p.unlink()
    out = tmp_path / "run"
    rc, _, err = _cli(capsys, tiny_argv("cls", cls, out, batch_size=4))
    _assert_one_line_error(rc, err, folder, "empty class folder")
    _no_run_left(out)


# --- detection (COCO layout) ---------------------------------------------------------------------


def _det(capsys, coco: Path, out: Path) -> tuple[int, str, str]:
    return _cli(capsys, tiny_argv("det", coco, out) + ["--fpn-channels", "16", "--roi-batch-size", "8"])


def _edit(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _cut_short(path: Path) -> list[str]:
    path.write_text(path.read_text()[:500])  # as a failed download leaves it
    return ["not a JSON annotation file"]


def _box_outside(path: Path) -> list[str]:
    _edit(path, lambda d: d["annotations"][1]["bbox"].__setitem__(0, 60.0))  # 60 + width > 64
    return [f"annotation {json.loads(path.read_text())['annotations'][1]['id']}", "outside", "64x64"]


def _no_images(path: Path) -> list[str]:
    _edit(path, lambda d: d.__setitem__("images", []))
    return ["empty image list"]


def _no_annotations(path: Path) -> list[str]:
    _edit(path, lambda d: d.__setitem__("annotations", []))
    return ["no training image has a (non-crowd) box"]


def _unknown_category(path: Path) -> list[str]:
    _edit(path, lambda d: d["annotations"][0].__setitem__("category_id", 99))
    return ["category_id 99"]


@pytest.mark.parametrize("split, damage", [
    ("train", _cut_short), ("val", _cut_short), ("train", _box_outside), ("train", _no_images),
    ("train", _no_annotations), ("val", _unknown_category),
])
def test_bad_annotation_file(capsys, tmp_path, copy_of, split, damage):
    coco = copy_of("synth_det_data")
    path = coco / "annotations" / f"instances_{split}2017.json"
    needles = damage(path)
    out = tmp_path / "run"
    rc, _, err = _det(capsys, coco, out)
    _assert_one_line_error(rc, err, path, *needles)
    _no_run_left(out)


def test_listed_image_is_missing(capsys, tmp_path, copy_of):
    coco = copy_of("synth_det_data")
    image = sorted((coco / "val2017").iterdir())[1]
    image.unlink()
    out = tmp_path / "run"
    rc, _, err = _det(capsys, coco, out)
    _assert_one_line_error(rc, err, image, "instances_val2017.json")
    _no_run_left(out)


def test_option_of_another_task(capsys, tmp_path, tiny_train_argv, synth_data):
    out = tmp_path / "run"
    rc, _, err = _train(capsys, tiny_train_argv, synth_data, out, "--linear-probe")
    _assert_one_line_error(rc, err, "--linear-probe", "cls")
    _no_run_left(out)


# --- checkpoints -------------------------------------------------------------------------------


def _eval(capsys, ckpt: Path, data: Path, tmp_path: Path) -> tuple[int, str, str, Path]:
    js = tmp_path / "metrics.json"
    rc, out, err = _cli(capsys, ["eval", "seg", "--checkpoint", ckpt, "--data", data, "--workers", 0, "--json", js])
    return rc, out, err, js


def test_eval_checkpoint_of_another_architecture(capsys, tmp_path, trained_ckpt, synth_data):
    ckpt = torch.load(trained_ckpt, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["model"]["encoder"] = "mci1"
    other = tmp_path / "other-arch.ckpt"
    torch.save(ckpt, other)
    rc, _, err, js = _eval(capsys, other, synth_data, tmp_path)
    _assert_one_line_error(rc, err, other, "mci1")
    assert not js.exists()


def test_eval_truncated_checkpoint(capsys, tmp_path, trained_ckpt, synth_data):
    raw = trained_ckpt.read_bytes()
    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(raw[: len(raw) // 2])
    rc, _, err, js = _eval(capsys, bad, synth_data, tmp_path)
    _assert_one_line_error(rc, err, bad)
    assert not js.exists()


@pytest.mark.parametrize("kind", ["state_dict", "text", "missing"])
def test_eval_file_that_is_not_an_mcq_checkpoint(capsys, tmp_path, synth_data, kind):
    bad = tmp_path / "not-mcq.ckpt"
    if kind == "state_dict":
        torch.save({"weight": torch.zeros(3), "bias": torch.ones(3)}, bad)
    elif kind == "text":
        bad.write_text("hello, I am a text file\n")
    rc, _, err, js = _eval(capsys, bad, synth_data, tmp_path)
    line = _assert_one_line_error(rc, err, bad)
    assert "run code" not in line  # a text file is no code-running pickle
    assert not js.exists()


def test_eval_checkpoint_of_another_task(capsys, tmp_path, trained_ckpt, synth_depth_data):
    js = tmp_path / "metrics.json"
    rc, _, err = _cli(capsys, ["eval", "depth", "--checkpoint", trained_ckpt, "--data", synth_depth_data, "--json", js])
    _assert_one_line_error(rc, err, trained_ckpt, "seg checkpoint", "mcq eval seg")
    assert not js.exists()


def test_eval_of_the_good_checkpoint_works(capsys, tmp_path, trained_ckpt, synth_data):
    # the control for the cases above
    rc, out, err, js = _eval(capsys, trained_ckpt, synth_data, tmp_path)
    assert rc == 0, err
    assert "mIoU" in out and js.is_file()


def test_init_from_a_checkpoint_of_another_architecture(capsys, tmp_path, tiny_train_argv, synth_data):
    import timm

    init = tmp_path / "fastvit_mci1.pt"
    torch.save(timm.create_model("fastvit_mci1", pretrained=False).state_dict(), init)
    out = tmp_path / "run"
    rc, _, err = _train(capsys, tiny_train_argv, synth_data, out, "--init", init)
    _assert_one_line_error(rc, err, init, "mci0")
    _no_run_left(out)


# --- options -----------------------------------------------------------------------------------


def test_image_size_the_model_cannot_take(capsys, tmp_path, tiny_train_argv, synth_data):
    out = tmp_path / "run"
    rc, _, err = _train(capsys, tiny_train_argv, synth_data, out, "--img-size", 100)
    _assert_one_line_error(rc, err, "100", "multiple of 32")
    _no_run_left(out)


def test_debug_reraises_with_a_traceback(capsys, tmp_path, tiny_train_argv):
    data, out = tmp_path / "no-such-data", tmp_path / "run"
    capsys.readouterr()
    with pytest.raises(McqError, match="no-such-data") as info:
        main(["train", "seg", *tiny_train_argv, "--data", str(data), "--out", str(out), "--debug"])
    assert info.traceback  # a real exception with its traceback, not a printed line
    assert "mcq: error" not in capsys.readouterr().err
    _no_run_left(out)


def test_a_bad_init_is_refused_before_the_embedded_data_is_written(capsys, monkeypatch, tmp_path, tiny_train_argv):
    """Without --data, training writes the embedded dataset first; an --init that does not fit is refused before."""
    import timm

    monkeypatch.setenv("MCQ_HOME", str(tmp_path / "home"))
    init = tmp_path / "fastvit_mci1.pt"
    torch.save(timm.create_model("fastvit_mci1", pretrained=False).state_dict(), init)
    out = tmp_path / "run"
    rc, _, err = _cli(capsys, ["train", "seg", *tiny_train_argv, "--out", out, "--init", init])
    _assert_one_line_error(rc, err, init, "mci0")
    assert not (tmp_path / "home").exists()
    _no_run_left(out)


def test_a_profile_refused_before_any_cell_leaves_no_folder(capsys, tmp_path):
    out = tmp_path / "prof"
    rc, _, err = _cli(capsys, ["profile", "--checkpoint", tmp_path / "missing.ckpt", "--runtimes", "torch",
                               "--precision", "fp32", "--out", out])
    _assert_one_line_error(rc, err, "missing.ckpt")
    assert not out.exists()


def test_an_unexpected_error_is_one_line_without_debug_and_a_traceback_with_it(capsys, monkeypatch, tmp_path):
    """An error that is not mcq's own (a bug) names the command and asks for --debug; --debug raises it."""
    import mcq.data

    def broken(out, seed=0, n_train=1, n_val=1, size=64):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setitem(mcq.data.synthetic.SYNTH, "seg", mcq.data.synthetic.Synth(broken, "ADE20K"))
    rc, _, err = _cli(capsys, ["data", "synth", "seg", "--out", str(tmp_path / "d")])
    assert rc == 1 and err.strip().count("\n") == 0, err
    assert err.strip() == ("mcq data: unexpected TypeError: unsupported operand type(s) for +: 'int' and 'str' (run "
                           "again with --debug for the traceback)")
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["data", "synth", "seg", "--out", str(tmp_path / "d"), "--debug"])


def test_debug_prints_the_traceback_of_a_failed_artifact(capsys, monkeypatch, trained_ckpt, synth_data, tmp_path):
    """An exporter that breaks fails its artifact only, in one line; with --debug the traceback follows."""
    from mcq.export import onnx as onnx_format

    def broken(*args, **kwargs):
        raise TypeError("a bug in the exporter")

    monkeypatch.setattr(onnx_format, "export", broken)
    argv = ["export", "onnx", "--checkpoint", str(trained_ckpt), "--data", str(synth_data), "--out", str(tmp_path),
            "--eval-images", "0"]
    rc, out, err = _cli(capsys, argv)
    assert rc == 1 and "a bug in the exporter" in out and "Traceback" not in err, err
    rc, out, err = _cli(capsys, [*argv, "--debug"])
    assert rc == 1 and "Traceback (most recent call last)" in err and "TypeError: a bug in the exporter" in err, err


def test_train_into_a_finished_run_is_refused(capsys, tiny_train_argv, trained_run, synth_data):
    before = {p: p.stat().st_mtime_ns for p in trained_run.rglob("*")}
    rc, _, err = _train(capsys, tiny_train_argv, synth_data, trained_run)
    _assert_one_line_error(rc, err, trained_run, "--resume", "--exist-ok")
    assert {p: p.stat().st_mtime_ns for p in trained_run.rglob("*")} == before


def test_a_run_stopped_by_sigterm_does_not_exit_0(capsys, monkeypatch):
    """Lightning stops a run on SIGTERM with a SystemExit of no code; mcq answers 143, as a shell does for SIGTERM."""
    import mcq.cli.models
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    def stopped(args):
        raise SIGTERMException()

    monkeypatch.setattr(mcq.cli.models, "run", stopped)
    assert main(["models"]) == 143
    assert "mcq: terminated (SIGTERM)" in capsys.readouterr().err
