"""`mcq profile`: the table, profile.json, report and plot of a tiny model; the status column's paths (ran, failed,
cannot run here, not supported); the Pareto front; `mcq profile compare` and its --fail-on gate."""

from __future__ import annotations

import copy
import json
import re

import pytest

from conftest import copy_artifact
from mcq.cli import main
from mcq.errors import McqError
from mcq.profile import ProfileConfig, profile
from mcq.profile.compare import compare, parse_fail_on
from mcq.profile.frontier import pareto_front
from mcq.runtime import coreml as coreml_rt
from mcq.tasks.specs import task_spec


@pytest.fixture(scope="module")
def profiled(trained_ckpt, synth_data, tmp_path_factory):
    """`mcq profile` of the tiny trained mci0 (64 px) through torch, onnxruntime and Core ML, with its eval JSON."""
    from mcq.train.evaluate import evaluate

    tmp = tmp_path_factory.mktemp("profile")
    metrics = evaluate("seg", trained_ckpt, synth_data, workers=0, json_out=tmp / "eval.json", accelerator="cpu")
    out = tmp / "prof"
    argv = ["profile", "--checkpoint", str(trained_ckpt), "--runtimes", "torch,onnxruntime,coreml", "--precision",
            "fp32", "--runs", "2", "--warmup", "1", "--threads", "1", "--data", str(synth_data), "--accuracy",
            str(tmp / "eval.json"), "--out", str(out)]
    return out, metrics, argv


@pytest.fixture(scope="module")
def ran(profiled):
    import contextlib
    import io

    out, metrics, argv = profiled
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(argv)
    return rc, stdout.getvalue(), json.loads((out / "profile.json").read_text()), metrics


def test_table_json_report_and_plot(profiled, ran):
    out, _, _ = profiled
    rc, text, prof, metrics = ran
    assert rc == 0
    cells = {c["runtime"]: c for c in prof["cells"]}
    assert list(cells) == ["torch", "onnxruntime", "coreml"]
    for runtime in ("torch", "onnxruntime"):
        c = cells[runtime]
        assert c["status"] == "ran" and "why" not in c, c
        assert 0 < c["min_ms"] <= c["median_ms"] <= c["p90_ms"] and len(c["runs_ms"]) == 2
        assert c["load_ms"] > 0 and c["first_run_ms"] > 0 and c["peak_mem_mb"] > 0 and c["size_mb"] > 0
        source = "measured" if runtime == "torch" else "measured (torch fp32)"  # the eval was of the checkpoint
        assert c["accuracy"] == {"metric": "mIoU", "value": pytest.approx(100 * metrics["mIoU"]), "source": source,
                                 "note": str(out.parent / "eval.json")}
    assert cells["onnxruntime"]["parity"]["agreement"] >= 0.999
    assert 10 < cells["torch"]["params_m"] < 20 and 0 < cells["torch"]["gflops"] < 5  # mci0 at 64 px
    assert cells["torch"]["pre_ms"] > 0 and cells["torch"]["post_ms"] > 0
    assert prof["device"]["threads"] == 1 and prof["device"]["versions"]["onnxruntime"]
    # the table shows the JSON's figures, one row per cell, the device and the status column
    onnx_row = next(line for line in text.splitlines() if line.startswith("mci0+fpn") and " onnxruntime " in line)
    assert f"{cells['onnxruntime']['median_ms']:.1f}" in onnx_row and onnx_row.rstrip().endswith("ran")
    head = next(line for line in text.splitlines() if line.startswith("model "))
    assert head.split()[-1] == "status" and head.index("runtime") == onnx_row.index("onnxruntime")  # columns align
    assert prof["device"]["cpu"] in text and "1 threads for every runtime" in text
    report = (out / "report.md").read_text()
    assert "| mci0+fpn | 64 | onnxruntime | fp32 |" in report and "Pareto front" in report
    assert (out / "accuracy_latency.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "profile.partial.json").exists()  # a finished profile leaves none


def test_core_ml_cannot_run_here(ran):
    _, text, prof, _ = ran
    coreml = next(c for c in prof["cells"] if c["runtime"] == "coreml")
    assert coreml["status"] == "cannot run here" and "macOS" in coreml["why"]
    assert coreml["size_mb"] > 0 and "median_ms" not in coreml  # exported and checked, not timed
    assert "cannot run here: " in next(line for line in text.splitlines() if line.startswith("mci0+fpn") and " coreml " in line)


def test_failed_and_not_supported(monkeypatch, synth_data, tmp_path):
    """An export that breaks is a failed cell with its one-line reason; the rest of the profile goes on."""
    from mcq.export import onnx as onnx_format

    def broken(*args, **kwargs):
        raise RuntimeError("no int8 kernel for Foo\nlong traceback")

    monkeypatch.setattr(onnx_format, "export", broken)
    prof = profile(ProfileConfig(models=["mci0"], runtimes=["torch", "onnxruntime"], precisions=["int8"],
                                 img_sizes=[64], runs=1, warmup=0, data=str(synth_data), out=str(tmp_path),
                                 parity_images=1, calib_images=1))
    cells = {c["runtime"]: c for c in prof["cells"]}
    assert cells["onnxruntime"]["status"] == "failed" and cells["onnxruntime"]["why"] == "no int8 kernel for Foo"
    assert cells["torch"]["status"] == "not supported"
    assert cells["torch"]["accuracy"]["source"] == "published" and cells["torch"]["accuracy"]["value"] == 48.1
    assert not list(tmp_path.glob("artifacts/*.onnx"))


def test_on_random_weights_an_artifact_failing_parity_is_timed_and_marked(monkeypatch, synth_data, tmp_path):
    """Random weights: the artifact that fails parity is kept, timed, reused and marked (status, plot, not on the
    front). (A trained checkpoint's is refused and removed: test_export_onnx.py, test_a_wrong_artifact_is_refused...)"""
    from mcq.profile.frontier import front_cells
    from mcq.profile.report import status_text

    monkeypatch.setitem(task_spec("seg").parity_thresholds, "fp32", {"agreement": 1.01})  # no artifact can pass
    cfg = dict(runtimes=["onnxruntime"], precisions=["fp32"], runs=1, warmup=0, data=str(synth_data),
               parity_images=1, out=str(tmp_path))
    prof = profile(ProfileConfig(models=["mci0"], img_sizes=[64], **cfg))
    [cell] = prof["cells"]
    assert cell["status"] == "ran" and cell["median_ms"] > 0 and "agreement" in cell["parity_failed"]
    assert "parity failed on random weights" in status_text(cell) and not cell["parity"]["passed"]
    assert front_cells(prof["cells"]) == [] and (tmp_path / "accuracy_latency.png").exists()
    [again] = profile(ProfileConfig(models=["mci0"], img_sizes=[64], **cfg))["cells"]
    assert again["reused"] and again["parity_failed"] == cell["parity_failed"]


@pytest.mark.slow
def test_labels_outputs_take_the_argmax_into_every_model(trained_ckpt, trained_depth_ckpt, synth_data, labels_seg,
                                                         tmp_path):
    """`--outputs labels`: each seg cell's model returns class indices (artifacts named -labels), judged on them; post
    ms is their resize to the image. A checkpoint of another task is refused before anything runs. The ExecuTorch
    program is the suite's shared labels export, which the profile reuses (it names the same checkpoint)."""
    copy_artifact(labels_seg[1]["executorch"], tmp_path / "p" / "artifacts")
    rc = main(["profile", "--checkpoint", str(trained_ckpt), "--runtimes", "torch,onnxruntime,executorch",
               "--precision", "fp32", "--outputs", "labels", "--runs", "1", "--warmup", "0", "--threads", "1",
               "--data", str(synth_data), "--parity-images", "1", "--out", str(tmp_path / "p")])
    prof = json.loads((tmp_path / "p" / "profile.json").read_text())
    assert rc == 0 and prof["settings"]["outputs"] == "labels"
    cells = {c["runtime"]: c for c in prof["cells"]}
    assert all(c["status"] == "ran" and c["outputs"] == "labels" and c["post_ms"] > 0 for c in cells.values()), cells
    assert cells["onnxruntime"]["artifact"] == "mci0_fpn_64_fp32-labels.onnx"
    assert cells["executorch"]["artifact"] == "mci0_fpn_64_fp32-labels.pte" and cells["executorch"]["reused"]
    for runtime in ("onnxruntime", "executorch"):
        parity = cells[runtime]["parity"]
        assert parity["agreement"] == 1.0 and "max_rel" not in parity, parity
    report = (tmp_path / "p" / "report.md").read_text()
    assert "the labels from the model (argmax in the graph) resized to the image" in report
    with pytest.raises(McqError, match=f"{trained_depth_ckpt}: --outputs labels is for segmentation models, not depth"):
        profile(ProfileConfig(checkpoints=[str(trained_depth_ckpt)], outputs="labels", out=str(tmp_path / "d")))
    with pytest.raises(McqError, match="--outputs probs: not one of logits, labels"):
        ProfileConfig(models=["mci0"], outputs="probs").check()


def test_core_ml_takes_each_compute_unit_setting_where_it_predicts(monkeypatch, trained_ckpt, synth_data, tmp_path):
    """Where Core ML predicts (macOS; here PyTorch stands in for its runtime and a stub for the package), each
    compute-unit setting is a cell of its own, opened with that setting and labelled with it."""
    import coremltools as ct

    from mcq.export import coreml
    from mcq.runtime.artifacts import open_model
    from mcq.profile.report import format_table

    reference, opened = open_model(trained_ckpt).run, []

    def package(model, example, path, precision, calib, meta):
        meta["coreml_input"] = coreml._image_input(meta["input"]["mean"], meta["input"]["std"])  # as export records
        path.mkdir()
        (path / "weights.bin").write_bytes(bytes(1000))

    def run_all(path, threads=None, compute_units="all"):
        opened.append(compute_units)
        return lambda x: [reference(x)]

    monkeypatch.setattr(coreml_rt, "can_predict", lambda: True)
    monkeypatch.setattr(coreml, "export", package)
    monkeypatch.setattr(coreml_rt, "run_all", run_all)
    prof = profile(ProfileConfig(checkpoints=[str(trained_ckpt)], runtimes=["coreml"], precisions=["fp32"],
                                 compute_units=["cpu_only", "all"], runs=1, warmup=0, data=str(synth_data),
                                 out=str(tmp_path), parity_images=1))
    assert [(c["compute_units"], c["status"]) for c in prof["cells"]] == [("cpu_only", "ran"), ("all", "ran")]
    assert opened == ["all", "cpu_only", "all"]  # the export's parity check, then one cell per setting
    assert prof["settings"]["compute_units"] == ["cpu_only", "all"]
    rows = [line for line in format_table(prof).splitlines() if line.startswith("mci0+fpn")]
    assert [row.split()[2] for row in rows] == ["coreml/cpu", "coreml/all"]
    assert coreml_rt.compute_unit("cpu_and_gpu") is ct.ComputeUnit.CPU_AND_GPU
    with pytest.raises(McqError, match="unknown Core ML compute units gpu; known: cpu_only"):
        ProfileConfig(models=["mci0"], compute_units=["gpu"]).check()


def test_an_encoder_is_profiled_at_its_papers_input_size(monkeypatch, tmp_path):
    from dataclasses import replace

    from mcq.tasks.checkpoint import load_state
    from mcq.models import encoders
    from mcq.profile.profiler import random_checkpoint

    assert encoders.encoder_info("swin_l").img_size == 640 and encoders.encoder_info("vit_adapter_b").img_size == 512
    info, factory = encoders._REGISTRY["mci0"]
    monkeypatch.setitem(encoders._REGISTRY, "mci0", (replace(info, img_size=320), factory))
    hp = load_state(random_checkpoint("mci0", tmp_path))["hyper_parameters"]
    assert hp["optim"]["img_size"] == 320 and hp["model"]["head"] == "fpn"


def test_a_stopped_profile_keeps_what_it_measured(monkeypatch, synth_data, tmp_path):
    from mcq.profile import profiler

    real, calls = profiler.profile_cell, []

    def stop_at_the_second(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(profiler, "profile_cell", stop_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        profile(ProfileConfig(models=["mci0"], runtimes=["torch", "onnxruntime"], precisions=["fp32"], img_sizes=[64],
                              runs=1, warmup=0, data=str(synth_data), out=str(tmp_path)))
    kept = json.loads((tmp_path / "profile.partial.json").read_text())
    assert kept["cells_planned"] == 2 and [(c["runtime"], c["status"]) for c in kept["cells"]] == [("torch", "ran")]
    assert not (tmp_path / "profile.json").exists()


def test_pareto_front():
    points = [(10.0, 40.0), (20.0, 45.0), (15.0, 39.0), (30.0, 45.0), (5.0, 30.0), (20.0, 44.0), (50.0, 50.0)]
    assert pareto_front(points) == [4, 0, 1, 6]  # (15, 39), (30, 45) and (20, 44) are beaten
    assert pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [0, 1]  # equal points both stand
    assert pareto_front([]) == []


def _variant(prof: dict, path, **changes) -> str:
    """A copy of ``prof`` with ``changes`` ({runtime: fn(cell)}) applied, written to ``path``."""
    b = copy.deepcopy(prof)
    for cell in b["cells"]:
        if cell["runtime"] in changes:
            changes[cell["runtime"]](cell)
    path.write_text(json.dumps(b))
    return str(path)


def test_compare_gate(profiled, ran, tmp_path, capsys):
    out, _, _ = profiled
    prof = ran[2]
    a = str(out / "profile.json")
    slower = _variant(prof, tmp_path / "slow.json", onnxruntime=lambda c: c.update(median_ms=1.2 * c["median_ms"]))
    text, failures = compare(a, slower, "latency+10%")
    assert len(failures) == 1 and failures[0].startswith("mci0+fpn 64 onnxruntime fp32: latency") and "FAILED" in text
    assert compare(a, slower, "latency+25%")[1] == []
    assert compare(a, slower, "")[1] == []  # no gate, no failure
    worse = _variant(prof, tmp_path / "worse.json", torch=lambda c: c["accuracy"].update(value=c["accuracy"]["value"] - 1))
    assert len(compare(a, worse, "miou-0.5")[1]) == 1 and compare(a, worse, "miou-2")[1] == []
    broke = _variant(prof, tmp_path / "broke.json", torch=lambda c: c.update(status="failed", why="x"))
    assert compare(a, broke, "latency+50%")[1] == ["mci0+fpn 64 torch fp32: ran in A, failed in B"]
    # the CLI exits 1 on a regression, 0 otherwise
    assert main(["profile", "compare", a, slower, "--fail-on", "latency+10%,miou-0.5"]) == 1
    assert main(["profile", "compare", str(out), a, "--fail-on", "latency+10%,miou-0.5"]) == 0
    assert "gate latency+10%, miou-0.5 points: passed" in capsys.readouterr().out


def test_compare_bad_input(tmp_path, capsys):
    bad = tmp_path / "profile.json"
    bad.write_text("{not json")
    assert main(["profile", "compare", str(bad), str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and len(err.strip().splitlines()) == 1
    bad.write_text(json.dumps({"cells": [{"model": "x"}], "device": {}}))
    with pytest.raises(McqError, match="not an mcq profile"):
        compare(bad, bad)
    with pytest.raises(McqError, match="--fail-on 'speed\\+10%'"):
        parse_fail_on("latency+10%,speed+10%")
    eval_json = tmp_path / "val.json"
    eval_json.write_text(json.dumps({"encoder": "mci0", "img_size": 64}))  # no headline figure: refused before measuring
    with pytest.raises(McqError, match=re.escape(f"{eval_json}: not an `mcq eval --json` result")):
        profile(ProfileConfig(models=["mci0"], accuracy=[str(eval_json)], out=str(tmp_path / "p")))
    assert not (tmp_path / "p").exists()


def test_random_init_checkpoint(tmp_path):
    from mcq.tasks.checkpoint import read_checkpoint
    from mcq.profile.profiler import random_checkpoint

    path = random_checkpoint("mci0", tmp_path)
    task = read_checkpoint(path, "seg")
    assert task.model.cfg.num_classes == len(task.class_names) == 150 and task.model.cfg.head == "fpn"
    mtime = path.stat().st_mtime_ns
    assert random_checkpoint("mci0", tmp_path) == path and path.stat().st_mtime_ns == mtime  # reused


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["profile", "--help"])
    assert "mcq profile compare" in capsys.readouterr().out


def test_report_of_several_sizes(tmp_path):
    """Report and plot from cells alone: two input sizes (colour in the plot), the front named in report.md."""
    from mcq.profile.device import describe_device
    from mcq.profile.report import write_outputs

    def cell(size, runtime, ms, miou, status="ran"):
        return {"model": "mci0+fpn", "encoder": "mci0", "head": "fpn", "img_size": size, "runtime": runtime,
                "precision": "fp32", "status": status, "median_ms": ms, "p90_ms": ms, "params_m": 11.0,
                "pre_post_image": "512x512", "accuracy": {"metric": "mIoU", "value": miou, "source": "measured",
                                                          "note": "val.json"}}

    cells = [cell(256, "torch", 40.0, 40.0), cell(512, "torch", 150.0, 45.0), cell(512, "onnxruntime", 90.0, 45.0),
             cell(256, "onnxruntime", 30.0, 39.0), {**cell(512, "executorch", 1.0, 99.0, "failed"), "why": "x"}]
    prof = {"created": "now", "device": describe_device(1), "cells": cells,
            "settings": {"threads": 1, "runs": 2, "warmup": 1, "memory": "rss", "data": "d"}}
    paths = write_outputs(prof, tmp_path)
    assert (tmp_path / "accuracy_latency.png").read_bytes()[:4] == b"\x89PNG" and "plot" in paths
    front = next(line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("Pareto"))
    # the failed cell's figures are not on the front; (512, torch) is beaten by (512, onnxruntime)
    assert front == ("Pareto front (no other cell is both faster and more accurate): mci0+fpn 256 px onnxruntime fp32, "
                     "mci0+fpn 256 px torch fp32, mci0+fpn 512 px onnxruntime fp32.")


@pytest.mark.slow
def test_det_depth_and_cls_checkpoints(trained_det_ckpt, trained_depth_ckpt, trained_cls_ckpt, synth_det_data,
                                       synth_depth_data, synth_cls_data, tmp_path):
    """Every task's checkpoint takes the profile: its own data and input, its task's accuracy, and for Mask R-CNN the
    graph each runtime holds (ONNX the full model, ExecuTorch the features with the rest timed as post-processing)."""
    from PIL import Image

    from mcq.train.evaluate import evaluate

    depth_eval = evaluate("depth", trained_depth_ckpt, synth_depth_data, workers=0, json_out=tmp_path / "depth.json",
                          accelerator="cpu")
    cells = {}
    for task, ckpt, data in (("det", trained_det_ckpt, synth_det_data), ("depth", trained_depth_ckpt, synth_depth_data),
                             ("cls", trained_cls_ckpt, synth_cls_data)):
        runtimes = ["torch", "onnxruntime"] + (["executorch"] if task == "det" else [])  # ExecuTorch: features graph
        prof = profile(ProfileConfig(checkpoints=[str(ckpt)], runtimes=runtimes,
                                     precisions=["fp32"], runs=1, warmup=0, accuracy=[str(tmp_path / "depth.json")],
                                     data=str(data), out=str(tmp_path / task), parity_images=1))
        cells.update({(c["task"], c["runtime"]): c for c in prof["cells"]})
    assert len(cells) == 7 and all(c["status"] == "ran" for c in cells.values()), cells
    for c in cells.values():
        assert 0 < c["median_ms"] and c["pre_ms"] > 0 and c["post_ms"] > 0 and c["params_m"] > 0, c
    assert [cells[("det", r)]["graph"] for r in ("torch", "onnxruntime", "executorch")] == ["full", "full", "features"]
    # the features graph leaves RoI heads, NMS and mask pasting to Python: far more post-processing than the full one
    assert cells[("det", "executorch")]["post_ms"] > 3 * cells[("det", "onnxruntime")]["post_ms"]
    assert cells[("depth", "torch")]["accuracy"] == {"metric": "RMSE m", "value": pytest.approx(depth_eval["rmse"]),
                                                     "source": "measured", "note": str(tmp_path / "depth.json")}
    assert "accuracy" not in cells[("cls", "torch")]  # no eval of it given, and the published figures are ADE20K's
    assert cells[("depth", "onnxruntime")]["parity"]["mean_rel"] < 1e-4
    first = sorted((synth_det_data / "val2017").iterdir())[0]
    assert cells[("det", "torch")]["pre_post_image"] == "x".join(map(str, Image.open(first).size))
    assert "| ran (features graph) |" in (tmp_path / "det" / "report.md").read_text()
    assert " RMSE m |" in (tmp_path / "depth" / "report.md").read_text()
    assert not (tmp_path / "det" / "accuracy_latency.png").exists()  # no ADE20K mIoU cell: no plot
    # Mask R-CNN exports in fp32 only: its int8 cells say so without exporting anything
    [cell] = profile(ProfileConfig(checkpoints=[str(trained_det_ckpt)], runtimes=["onnxruntime"], precisions=["int8"],
                                   runs=1, warmup=0, data=str(synth_det_data), out=str(tmp_path / "q")))["cells"]
    assert (cell["status"], cell["why"]) == ("not supported", "det models export in fp32 only")
    assert not list((tmp_path / "q" / "artifacts").iterdir())


@pytest.mark.parametrize("source", ["measured", "published"])
def test_published_note_only_when_a_published_figure_is_shown(source):
    from mcq.profile.report import format_markdown, format_table

    cell = {"model": "mci0+fpn", "img_size": 64, "runtime": "torch", "precision": "fp32", "status": "ran",
            "median_ms": 1.0, "pre_post_image": "64x64", "accuracy": {"metric": "mIoU", "value": 40.0,
                                                                        "source": source, "note": "x"}}
    prof = {"created": "now", "device": {"cpu": "cpu"}, "cells": [cell],
            "settings": {"threads": 1, "runs": 1, "warmup": 0, "memory": "m", "data": "d"}}
    for text in (format_table(prof), format_markdown(prof, None)):
        assert ("published" in text.split("Accuracy sources")[0]) == (source == "published")


def test_an_artifact_eval_beside_its_checkpoint_eval_shows_the_drop(tmp_path):
    """A cell measured by its artifact's eval carries the drop against the checkpoint's eval on the same data, shown
    as the change in the table and report.md; without the checkpoint's eval, or on other data, there is none."""
    from mcq.profile.accuracy import attach_accuracy, load_eval
    from mcq.profile.device import describe_device
    from mcq.profile.report import format_markdown, format_table

    def measured(name: str, miou: float, data: str = "d", **who) -> dict:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"encoder": "mci0", "head": "fpn", "img_size": 64, "data": data, "mIoU": miou,
                                    **who}))
        return load_eval(path)

    def cells(*evals: dict) -> list[dict]:
        out = [{"model": "mci0+fpn", "task": "seg", "encoder": "mci0", "head": "fpn", "img_size": 64, "runtime": r, "precision": p,
                "status": "ran", "median_ms": 1.0, "params_m": 11.0}
               for r, p in [("torch", "fp32"), ("onnxruntime", "int8"), ("onnxruntime", "fp32")]]
        attach_accuracy(out, list(evals), [])
        return out

    checkpoint, int8 = measured("ckpt", 0.42), measured("int8", 0.417, runtime="onnxruntime", precision="int8")
    both = cells(checkpoint, int8)
    assert both[1]["accuracy"]["drop"] == pytest.approx(0.3) and both[1]["accuracy"]["checkpoint"] == pytest.approx(42)
    assert not any("drop" in c["accuracy"] for c in (both[0], both[2]))  # the checkpoint's own figure
    assert "drop" not in cells(int8)[1]["accuracy"]
    assert "drop" not in cells(measured("other", 0.42, data="elsewhere"), int8)[1]["accuracy"]
    prof = {"created": "now", "device": describe_device(1), "cells": both,
            "settings": {"threads": 1, "runs": 2, "warmup": 1, "memory": "rss", "data": "d"}}
    table = format_table(prof)
    assert "41.7 (-0.3) mIoU" in next(line for line in table.splitlines() if " int8 " in line)
    assert "(+-x): against the checkpoint's torch fp32 eval" in table
    assert "| 41.7 (-0.3) mIoU |" in format_markdown(prof, None)
    assert "(+-x)" not in format_table({**prof, "cells": cells(int8)})


def test_published_figures_go_to_the_cells_of_their_metric(tmp_path):
    """A baselines file names its metric; its entries go only to cells whose task reports that metric, and a file
    that does not say which metric it holds is refused in one line naming it."""
    from mcq.profile.accuracy import attach_accuracy, load_baselines

    entry = {"encoder": "mci0", "head": "fpn", "value": 48.1, "source": "paper"}
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"metric": "mIoU", "entries": [entry]}))
    cells = [{"task": t, "encoder": "mci0", "head": "fpn", "img_size": 64, "runtime": "torch", "precision": "fp32"}
             for t in ("seg", "depth")]
    attach_accuracy(cells, [], load_baselines(path))
    assert cells[0]["accuracy"]["value"] == 48.1 and cells[0]["accuracy"]["metric"] == "mIoU"
    assert "accuracy" not in cells[1]
    path.write_text(json.dumps({"entries": [entry]}))
    with pytest.raises(McqError, match=f"{path}: not a baselines file \\(needs 'metric', one of mIoU, "):
        load_baselines(path)
