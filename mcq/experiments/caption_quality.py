"""The caption-quality experiment (``mcq experiment caption-quality``): does CLIP pretraining on well-aligned captions
give a better encoder for segmentation than pretraining on noisy web captions, or than none?

On the embedded synthetic world (``mcq.data.synth_clip``) each image has a noisy web caption (``txt``: wrong, unrelated
or empty at the ``noise`` rate) and five accurate synthetic ones (``syn.json``). With the same encoder, steps, batch
and images, three arms:

* ``txt``: CLIP loss on the noisy web caption only (``--captions gt``; "gt" is DataCompDR's name for the web caption);
* ``gt+syn``: the DataCompDR loss: the mean of the CLIP losses on the web caption and on one synthetic caption per
  image (``--captions gt,syn``): the paper's recipe, where the noisy caption is kept and the synthetic one added;
* ``none``: no CLIP pretraining (random init).

Each encoder is then fine-tuned with SemanticFPN on the labelled set of the same world, with the same budget; every
seed repeats the whole chain (pretraining and fine-tuning). Retrieval recall is ``mcq eval clip`` on the held-back
shards, scored on both caption kinds. Everything runs through ``mcq.engine.train.train`` and
``mcq.engine.evaluate.evaluate``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ARMS = {"txt": "gt", "gt+syn": "gt,syn", "none": None}  # arm -> the captions of its CLIP loss (None: no pretraining)


@dataclass
class CaptionQualityConfig:
    """Budgets and sizes, the defaults sized to 30 minutes on two idle CPU cores: one CLIP step (batch 32, 64 px,
    gt,syn) measured 1.9 CPU-s and one SemanticFPN step (batch 8, 64 px) 1.0 CPU-s on one thread, so two seeds
    (4 pretrainings, 6 fine-tunings) cost about 27 CPU-minutes of training, plus validation and start-up, shared
    by the two cores' threads (an estimate from those steps, not a timed end-to-end run)."""

    out: str = "runs/caption-quality"
    encoder: str = "mci0"
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    noise: float = 0.5  # share of web captions that are wrong, unrelated or empty
    n_train: int = 2000  # image-text pairs for pretraining
    n_val: int = 200  # held-back pairs for recall
    n_seg: int = 96  # labelled training images (and half as many validation images)
    data_size: int = 64  # pixels of the generated images
    data_seed: int = 0  # one world for every arm and seed; the seeds vary the training
    clip_steps: int = 120
    clip_batch: int = 32
    clip_img_size: int = 64
    text_width: int = 128
    text_layers: int = 2
    seg_steps: int = 120
    seg_batch: int = 8
    seg_img_size: int = 64
    seg_lr: float = 5e-4  # the top of the paper's sweep (Table 14): short runs need it
    workers: int = 0


def _stage(text: str) -> None:
    print(f"\n== caption-quality: {text}", flush=True)


def run_caption_quality(cfg: CaptionQualityConfig) -> dict:
    """Run every arm for every seed; write ``OUT/caption_quality.json`` (rewritten after each arm, ``complete`` once
    all have run) and return what it holds."""
    from mcq.data.synth_clip import synth_clip
    from mcq.engine.evaluate import evaluate
    from mcq.engine.train import TrainConfig, train
    from mcq.io import write_json

    start = time.perf_counter()
    out = Path(cfg.out)
    data = out / "data"
    _stage(f"writing the synthetic world to {data}")
    synth_clip(data, cfg.n_train, cfg.n_val, cfg.data_size, seed=cfg.data_seed, noise=cfg.noise, n_seg=cfg.n_seg)
    common = dict(workers=cfg.workers, accelerator="cpu", exist_ok=True)
    rows = []
    for seed in cfg.seeds:
        for arm, captions in ARMS.items():
            run = out / f"{arm.replace('+', '_')}-seed{seed}"
            init, recall, clip_s = None, None, 0.0
            if captions:
                _stage(f"seed {seed}, arm {arm}: CLIP pretraining on {captions} ({cfg.clip_steps} steps)")
                t = time.perf_counter()
                clip_run, metrics = train(TrainConfig(
                    task="clip", model=cfg.encoder, data=str(data / "train"), val_data=str(data / "val"),
                    captions=captions, max_steps=cfg.clip_steps, batch_size=cfg.clip_batch, img_size=cfg.clip_img_size,
                    val_every=cfg.clip_steps, text_width=cfg.text_width, text_layers=cfg.text_layers,
                    out=str(run / "clip"), seed=seed, **common))
                recall = evaluate("clip", clip_run / "checkpoints" / "last.ckpt", data / "val", workers=0,
                                  accelerator="cpu", captions="gt,syn")["recall"]
                init, clip_s = metrics["openclip_checkpoint"], time.perf_counter() - t
            _stage(f"seed {seed}, arm {arm}: SemanticFPN fine-tuning ({cfg.seg_steps} steps)")
            t = time.perf_counter()
            _, seg = train(TrainConfig(
                task="seg", backbone=cfg.encoder, head="fpn", data=str(data / "seg"), init=init,
                max_steps=cfg.seg_steps, batch_size=cfg.seg_batch, img_size=cfg.seg_img_size, lr=cfg.seg_lr,
                val_every=cfg.seg_steps, out=str(run / "seg"), seed=seed, **common))
            rows.append({"arm": arm, "seed": seed, "captions": captions, "mIoU": seg["mIoU"], "mAcc": seg["mAcc"],
                         "recall": recall, "clip_s": round(clip_s, 1), "seg_s": round(time.perf_counter() - t, 1)})
            result = {"config": asdict(cfg), "arms": dict(ARMS), "complete": len(rows) == len(cfg.seeds) * len(ARMS),
                      "rows": rows, "summary": summarize(rows), "wall_s": round(time.perf_counter() - start, 1)}
            write_json(out / "caption_quality.json", result)  # after every arm: an interrupted run keeps its rows
    return result


def _spread(xs: list[float]) -> dict:
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "min": min(xs),
            "max": max(xs), "n": len(xs)}


def summarize(rows: list[dict]) -> dict:
    """Per arm: mIoU over seeds (mean, sample std, min, max) and the mean recall@1 per caption kind (image->text and
    text->image averaged)."""
    summary = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        s = {"mIoU": _spread([r["mIoU"] for r in mine])}
        if mine[0]["recall"]:
            s["R@1"] = {kind: statistics.fmean((r["recall"][kind]["i2t_R@1"] + r["recall"][kind]["t2i_R@1"]) / 2
                                               for r in mine) for kind in mine[0]["recall"]}
        summary[arm] = s
    return summary


def format_caption_quality_table(result: dict) -> str:
    """One line per arm: mIoU (mean ± std over seeds, and each seed's) and retrieval recall@1 on held-back pairs."""
    seeds = result["config"]["seeds"]
    lines = [f"{'arm':<7} {'CLIP captions':<14} {'mIoU mean':>9} {'± std':>6}  {'per seed':<20} "
             f"{'R@1 txt':>7} {'R@1 syn':>7}"]
    for arm, s in result["summary"].items():
        per_seed = " ".join(f"{100 * r['mIoU']:.2f}" for r in result["rows"] if r["arm"] == arm)
        r1 = s.get("R@1", {})
        recall = " ".join(f"{100 * r1[k]:7.2f}" if k in r1 else f"{'-':>7}" for k in ("gt", "syn"))
        lines.append(f"{arm:<7} {result['arms'][arm] or '(none)':<14} {100 * s['mIoU']['mean']:9.2f} "
                     f"{100 * s['mIoU']['std']:6.2f}  {per_seed:<20} {recall}")
    lines.append(f"mIoU in %, seeds {','.join(map(str, seeds))}; R@1: recall@1 in % (image->text and text->image "
                 f"averaged) on {result['config']['n_val']} held-back pairs, scored on the noisy web caption (txt) "
                 f"and on a synthetic caption (syn); chance {100 / result['config']['n_val']:.2f}%")
    return "\n".join(lines)
