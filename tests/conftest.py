"""Shared fixtures: a tiny synthetic dataset and one tiny trained run, each made once per session.

Everything is kept small enough for a shared two-core CPU: 64 px images, mci0, two steps.
``MCQ_HOME`` points into the session's temporary directory so no test writes to the user's home.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

# Options of a CPU training run small enough for a test (CLI spelling, see ``tiny_train_argv``).
TINY_TRAIN = dict(backbone="mci0", img_size=64, batch_size=2, max_steps=2, val_every=2, workers=0, accelerator="cpu")
# ... and of a CPU CLIP run (``mcq train clip``; add ``--data`` and ``--out``).
TINY_CLIP = ["--text-width", "64", "--text-layers", "1", "--img-size", "64", "--batch-size", "4", "--max-steps", "2",
             "--val-every", "2", "--workers", "0", "--accelerator", "cpu"]


def pytest_configure(config) -> None:
    """Under pytest-xdist (``make test`` runs one worker per core) each worker computes on one thread, and so do the
    processes its tests start (``OMP_NUM_THREADS``), so that the workers share the cores instead of fighting over them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"


def pytest_collection_modifyitems(config, items) -> None:
    """The slow end-to-end tests first: under pytest-xdist they then run beside the quick ones, not after them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session", autouse=True)
def mcq_home(tmp_path_factory) -> Path:
    """``$MCQ_HOME`` for the whole session: the embedded dataset and caches land here, not in ``~/.cache``."""
    home = tmp_path_factory.mktemp("mcq_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MCQ_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    """A tiny synthetic dataset in the ADE20K layout (6 train / 3 val, 64 px, 8 classes). Do not modify it."""
    from mcq.data import synth_seg

    return synth_seg(tmp_path_factory.mktemp("data") / "synth", n_train=6, n_val=3, size=64, seed=0)


@pytest.fixture
def data_copy(synth_data, tmp_path) -> Path:
    """A private copy of ``synth_data`` that a test may break."""
    return Path(shutil.copytree(synth_data, tmp_path / "data"))


@pytest.fixture(scope="session")
def tiny_train_argv() -> list[str]:
    """``mcq train seg`` options for a tiny CPU run (add ``--data`` and ``--out``)."""
    argv = []
    for k, v in TINY_TRAIN.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return argv


@pytest.fixture(scope="session")
def shared(tmp_path_factory, testrun_uid) -> Callable[[str, Callable[[Path], object]], Path]:
    """``shared(name, make)``: the folder ``name``, made by ``make(folder)`` once for the whole run. Under
    pytest-xdist (``make test``) the first worker to ask makes it under a file lock and the others wait for it and
    take it as it is: an ExecuTorch lowering of the tiny MCi0 takes half a minute (fp32) or more (int8), and the
    tests that read one program need not make their own. What ``make`` returns is kept as JSON beside it
    (``shared_result``). Do not modify what it makes."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / f"shared-{testrun_uid}"
    root.mkdir(exist_ok=True)

    def once(name: str, make: Callable[[Path], object]) -> Path:
        folder, done = root / name, root / f"{name}.json"
        with FileLock(root / f"{name}.lock"):
            if not done.is_file():
                shutil.rmtree(folder, ignore_errors=True)  # what a failed attempt left
                folder.mkdir()
                done.write_text(json.dumps(make(folder), default=str))
        return folder

    return once


def web_app_absent(why: str) -> None:
    """Skip a test of the web app for what it lacks here (``why``: no Chromium, no onnxruntime-web from npm); fail
    instead under ``MCQ_REQUIRE_WEB_APP=1``: CI (.ci/run) installs both, where a skip would hide the test."""
    (pytest.fail if os.environ.get("MCQ_REQUIRE_WEB_APP") == "1" else pytest.skip)(
        f"{why} (MCQ_REQUIRE_WEB_APP=1 makes this a failure)")


def shared_result(folder: Path):
    """What ``make`` returned for the folder ``shared`` made."""
    return json.loads(folder.with_suffix(".json").read_text())


def copy_artifact(report: dict, folder: Path) -> None:
    """The artifact of an export ``report`` and its sidecar copied into ``folder`` (made if missing), where
    ``mcq profile`` reuses an artifact whose sidecar names the same checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in (Path(report["path"]), Path(f"{report['path']}.json")):
        shutil.copyfile(path, folder / path.name)


@pytest.fixture(scope="session")
def trained_run(synth_data, shared) -> Path:
    """A finished tiny run (config.json, metrics.json, checkpoints/{best,last}.ckpt), one for every worker. Do not
    modify it."""
    from mcq.train.config import TrainConfig
    from mcq.train.train import train

    run = shared("seg-mci0", lambda out: train(TrainConfig(data=str(synth_data), out=str(out), **TINY_TRAIN)))
    assert (run / "metrics.json").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    return run


@pytest.fixture(scope="session")
def trained_ckpt(trained_run) -> Path:
    """The tiny run's ``checkpoints/last.ckpt``."""
    return trained_run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def synth_depth_data(tmp_path_factory) -> Path:
    """A tiny synthetic NYUv2 (BTS layout): 6 train / 3 test frames of 64x48. Do not modify it."""
    from mcq.data import synth_depth

    return synth_depth(tmp_path_factory.mktemp("data") / "nyu", n_train=6, n_val=3, size=64, seed=0)


@pytest.fixture(scope="session")
def synth_cls_data(tmp_path_factory) -> Path:
    """A tiny synthetic ImageFolder: 10 classes, 2 train / 1 val images each, 64 px. Do not modify it."""
    from mcq.data import synth_cls

    return synth_cls(tmp_path_factory.mktemp("data") / "cls", n_train=2, n_val=1, size=64, seed=0)


def _tiny_run(shared, task: str, data: Path, **overrides) -> Path:
    """``checkpoints/last.ckpt`` of a tiny finished ``task`` run on ``data``, one for every worker."""
    from mcq.train.config import TrainConfig
    from mcq.train.train import train

    def run(out: Path) -> tuple:
        return train(TrainConfig(task=task, data=str(data), out=str(out), **{**TINY_TRAIN, **overrides}))

    return shared(f"{task}-run", run) / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def trained_depth_ckpt(synth_depth_data, shared) -> Path:
    """A tiny depth run's ``last.ckpt``. Do not modify it."""
    return _tiny_run(shared, "depth", synth_depth_data)


@pytest.fixture(scope="session")
def trained_cls_ckpt(synth_cls_data, shared) -> Path:
    """A tiny classification run's ``last.ckpt``. Do not modify it."""
    return _tiny_run(shared, "cls", synth_cls_data)


@pytest.fixture(scope="session")
def synth_det_data(tmp_path_factory) -> Path:
    """A tiny synthetic COCO: 6 train / 3 val images of 64 px, 4 classes. Do not modify it."""
    from mcq.data import synth_det

    return synth_det(tmp_path_factory.mktemp("data") / "coco", n_train=6, n_val=3, size=64, seed=0)


@pytest.fixture(scope="session")
def trained_det_ckpt(synth_det_data, shared) -> Path:
    """A tiny Mask R-CNN run's ``last.ckpt`` (FPN 32 wide, 16 RoIs per image). Do not modify it."""
    return _tiny_run(shared, "det", synth_det_data, fpn_channels=32, roi_batch_size=16)


@pytest.fixture(scope="session")
def clip_data(tmp_path_factory) -> Path:
    """Tiny image-text shards (DataCompDR layout): train/ 2 x 8 samples, val/ 1 x 8, seg/ 4 + 2 images; 64 px.
    Do not modify it."""
    from mcq.data.synth_clip import synth_clip

    return synth_clip(tmp_path_factory.mktemp("data") / "clip", n_train=16, n_val=8, size=64, per_shard=8, n_seg=4)


@pytest.fixture
def copy_of(request, tmp_path):
    """``copy_of("synth_depth_data")``: a private copy of a session dataset fixture that a test may break."""
    return lambda name: Path(shutil.copytree(request.getfixturevalue(name), tmp_path / name))


def tiny_argv(task: str, data: Path, out: Path, **overrides) -> list[str]:
    """``mcq train TASK`` argv for a tiny CPU run on ``data`` into ``out``."""
    argv = ["train", task, "--data", str(data), "--out", str(out)]
    for k, v in {**TINY_TRAIN, **overrides}.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return argv


# task -> (checkpoint fixture, data fixture) of the tiny runs that task_exports exports
TINY_RUNS = {"depth": ("trained_depth_ckpt", "synth_depth_data"), "cls": ("trained_cls_ckpt", "synth_cls_data")}


@pytest.fixture(scope="session")
def task_exports(request, shared) -> Callable[[str], tuple[Path, dict[str, dict]]]:
    """``task_exports("depth")``: the tiny depth (or cls) run exported to ONNX, ExecuTorch and Core ML, fp32, three
    parity images, once for the whole run; the folder and the reports by format. Do not modify them."""
    from mcq.export.exporter import export_checkpoint

    def exports(task: str) -> tuple[Path, dict[str, dict]]:
        ckpt, data = (request.getfixturevalue(name) for name in TINY_RUNS[task])
        folder = shared(f"exports-{task}", lambda out: export_checkpoint(
            ckpt, ["onnx", "executorch", "coreml"], [None], out=out, data=data, n_images=3))
        return folder, {r["format"]: r for r in shared_result(folder)}

    return exports


@pytest.fixture(scope="session")
def executorch_seg(trained_ckpt, synth_data, shared) -> tuple[Path, list[dict]]:
    """The tiny seg run's ExecuTorch programs, fp32, fp16 and int8 (histogram, without the search: that is
    test_int8_search's), once for the whole run; the folder and the export reports. Do not modify them."""
    from mcq.export.exporter import export_checkpoint

    folder = shared("executorch-seg", lambda out: export_checkpoint(
        trained_ckpt, ["executorch"], ["fp32", "fp16", "int8"], out=out, data=synth_data, n_images=3, n_calib=4,
        calibration="histogram", int8_fallback="off"))
    return folder, shared_result(folder)


@pytest.fixture(scope="session")
def labels_seg(trained_ckpt, synth_data, shared) -> tuple[Path, dict[str, dict]]:
    """The tiny seg run exported with labels outputs (``--outputs labels``): ONNX and ExecuTorch fp32, Core ML fp32,
    once for the whole run; the folder and the reports by format. Do not modify them."""
    from mcq.export.exporter import export_checkpoint

    folder = shared("labels-seg", lambda out: export_checkpoint(
        trained_ckpt, ["onnx", "executorch", "coreml"], ["fp32"], out=out, data=synth_data, n_images=2,
        outputs="labels"))
    return folder, {r["format"]: r for r in shared_result(folder)}
