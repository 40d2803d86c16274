"""``mcq train clip --resume`` continues the shard stream where the interrupted run stopped: the stream is
deterministic given the seed, each batch says how far its stream has got, and a resumed stream skips that far."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import open_clip
import pytest
import torch

from conftest import TINY_CLIP
from mcq.data.clip_shards import SampleDecoder, TrainSamples, clip_pipeline, list_shards
from mcq.train.config import TrainConfig
from mcq.train.train import train


def _stream(shards: list[str], steps: int, skip: dict | None = None) -> list[dict]:
    """The first ``steps`` training batches (4 samples) of the stream over ``shards``, skipping ``skip``."""
    samples = TrainSamples(shards, seed=3, shuffle_buffer=6)
    samples.skip = skip or {}
    decoder = SampleDecoder(open_clip.image_transform(32, True, aug_cfg=dict(scale=(0.3, 1.0))),
                            open_clip.get_tokenizer("MobileCLIP2-S0", context_length=16), ("gt", "syn"), False, True)
    it = iter(clip_pipeline(samples, decoder, batch_size=4))
    return [next(it) for _ in range(steps)]


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in ("image", "gt", "syn"))


def test_a_skipped_stream_continues_the_uninterrupted_one(clip_data):
    """Over two passes of the 16 samples (each pass in its own order): the stream skipping the first 3 (or 4)
    batches' samples gives the whole one's next batches, crops and captions included."""
    shards = list_shards(clip_data / "train")
    whole = _stream(shards, 7)
    assert [(b["pass"], b["consumed"]) for b in whole] == [(0, 4), (0, 8), (0, 12), (0, 16), (1, 4), (1, 8), (1, 12)]
    assert {b["worker"] for b in whole} == {0}
    assert _same(whole[0], _stream(shards, 1)[0])  # deterministic
    first_pass, second_pass = torch.cat([b["gt"] for b in whole[:4]]), torch.cat([b["gt"] for b in whole[4:8]])
    assert not torch.equal(first_pass[:12], second_pass)  # the second pass has an order of its own
    for stop in (2, 3):  # within a pass, and at its end
        resumed = _stream(shards, 3, skip={"0/0": [whole[stop]["pass"], whole[stop]["consumed"]]})
        assert all(_same(a, b) for a, b in zip(resumed, whole[stop + 1:stop + 4], strict=True))
    restarted = _stream(shards, 4)  # what a resume without the skip would see
    assert not any(_same(a, b) for a, b in zip(restarted, whole[3:]))


class _Record(L.Callback):
    """The images of every training batch, and an error after ``stop_after`` steps (an interruption)."""

    def __init__(self, stop_after: int | None = None):
        self.images: list[torch.Tensor] = []
        self.stop_after = stop_after

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.images.append(batch["image"].clone())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.stop_after:
            raise RuntimeError("interrupted")


def _tiny_clip(data: Path, out: Path, **over) -> TrainConfig:
    """A tiny CPU CLIP run's config (as ``TINY_CLIP``, with ``over``)."""
    return TrainConfig(task="clip", data=str(data), out=str(out), text_width=64, text_layers=1, img_size=64,
                       batch_size=4, accelerator="cpu", **over)


def test_resume_sees_the_batches_the_uninterrupted_run_would_have(clip_data, tmp_path):
    """Two loader workers, interrupted after an odd number of steps (the next batch is worker 1's, but the resumed
    loader asks worker 0 first), with --distill (stored augmentations replayed): steps 4-5 of the resumed run are
    the uninterrupted run's."""
    cfg = dict(max_steps=5, val_every=5, workers=2, distill=True, seed=1)
    whole = _Record()
    train(_tiny_clip(clip_data, tmp_path / "whole", **cfg), [whole])
    first = _Record(stop_after=3)
    with pytest.raises(RuntimeError, match="interrupted"):
        train(_tiny_clip(clip_data, tmp_path / "resumed", **cfg), [first])
    state = torch.load(tmp_path / "resumed" / "checkpoints" / "interrupted.ckpt", weights_only=True)["clip_stream"]
    assert state == {"consumed": {"0/0": [0, 8], "0/1": [0, 4]}, "batches": {"0": 3}, "world": 1}  # 0/0: pass done
    second = _Record()
    train(TrainConfig(task="clip", out=str(tmp_path / "resumed"), resume=True, accelerator="cpu"), [second])
    assert len(whole.images) == 5 and len(second.images) == 2
    assert all(torch.equal(a, b) for a, b in zip(first.images, whole.images[:3]))
    assert all(torch.equal(a, b) for a, b in zip(second.images, whole.images[3:]))
    assert not torch.equal(second.images[0], whole.images[0])  # the stream did not restart


@pytest.mark.slow
def test_two_process_run_resumes_both_ranks_streams(clip_data, tmp_path):
    """Two CPU processes (gloo): the shards split across ranks and the features gathered for the loss; the
    checkpoint holds both ranks' stream positions (gathered to rank 0, which writes it), and a resume from it runs
    to the end."""
    run = tmp_path / "ddp"
    argv = [sys.executable, "-m", "mcq", "train", "clip", "--data", clip_data, "--devices", "2", "--out", run,
            *TINY_CLIP]
    argv[argv.index("--batch-size") + 1] = "8"
    argv[argv.index("--val-every") + 1] = "1"
    cwd = Path(__file__).parents[1]  # this checkout's mcq, in both ranks
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 1/2" in proc.stdout and "MEMBER: 2/2" in proc.stdout  # both ranks joined the process group
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == 2 and metrics["pairs"] == 8
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2  # last.ckpt is the run's end, whether or not best.ckpt improved
    assert ckpt["clip_stream"] == {"consumed": {"0/0": [0, 8], "1/0": [0, 8]}, "batches": {"0": 2, "1": 2}, "world": 2}
    config = json.loads((run / "config.json").read_text())
    config["train"]["max_steps"] = 3  # one step more than the finished run
    (run / "config.json").write_text(json.dumps(config))
    argv = [sys.executable, "-m", "mcq", "train", "clip", "--out", run, "--resume", "--devices", "2",
            "--accelerator", "cpu"]
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["clip_stream"]
    assert state["batches"] == {"0": 3, "1": 3} and json.loads((run / "metrics.json").read_text())["step"] == 3
