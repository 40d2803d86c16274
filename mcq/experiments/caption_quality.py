"""The caption-quality experiment (``mcq experiment caption-quality``): does CLIP pretraining on well-aligned captions
give a better encoder for dense prediction than pretraining on noisy web captions, or than none?

On the embedded synthetic world (``mcq.data.synth_clip``) each image has a noisy web caption (``txt``: wrong, unrelated
or empty at the ``noise`` rate) and five accurate synthetic ones (``syn.json``). With the same encoder, steps, batch
and images, three arms:

* ``txt``: CLIP loss on the noisy web caption only (``--captions gt``; "gt" is DataCompDR's name for the web caption);
* ``gt+syn``: the DataCompDR loss: the mean of the CLIP losses on the web caption and on one synthetic caption per
  image (``--captions gt,syn``): the paper's recipe, where the noisy caption is kept and the synthetic one added;
* ``none``: no CLIP pretraining (random init).

Each encoder is scored where pretraining shows, not only after a fine-tune that can wash it out: zero-shot
classification of single-object scenes from their names (the CLIP arms), a probe (SemanticFPN trained on the frozen
encoder), and fine-tuning with SemanticFPN on a share of the labelled set (the data-efficiency curve). Every seed
repeats the whole chain for every arm, so seeds pair the arms: gaps are means of per-seed differences with 95%
intervals (``mcq.experiments.stats``). Everything trains through ``mcq.train.train.train``.
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mcq.errors import McqError
from mcq.experiments.stats import paired_gap, verdict

ARMS = {"txt": "gt", "gt+syn": "gt,syn", "none": None}  # arm -> the captions of its CLIP loss (None: no pretraining)
COMPARISONS = (("gt+syn", "txt"), ("gt+syn", "none"), ("txt", "none"))
ZERO_SHOT, ZERO_SHOT_5, PROBE = "zero-shot top-1", "zero-shot top-5", "probe mIoU"


@dataclass
class CaptionQualityConfig:
    """Budgets and sizes; the defaults ran in 21.4 minutes on the 2-core CPU of the run in docs/clip.md."""

    out: str = "runs/caption-quality"
    encoder: str = "mci0"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    noise: float = 0.5  # share of web captions that are wrong, unrelated or empty
    n_train: int = 2000  # image-text pairs for pretraining
    n_val: int = 200  # held-back pairs for recall
    n_seg: int = 80  # labelled training images (and half as many validation images)
    data_size: int = 128  # pixels of the generated images: drawn at 64, 120 CLIP steps left zero-shot at chance
    data_seed: int = 0  # one world for every arm and seed; the seeds vary the training
    clip_steps: int = 120
    clip_batch: int = 32
    clip_img_size: int = 64
    text_width: int = 128
    text_layers: int = 2
    zero_shot_template: str = "a photo of a {}"  # the embedded captions' own phrasing
    probe_steps: int = 60
    seg_steps: int = 60  # per fine-tune, whatever the share of labels
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0])
    seg_batch: int = 8
    seg_img_size: int = 64
    seg_lr: float = 5e-4  # the top of the paper's sweep (Table 14): short runs need it
    workers: int = 0


def _stage(text: str) -> None:
    print(f"\n== caption-quality: {text}", flush=True)


def label_subset(seg: Path, fraction: float, out: Path, min_images: int) -> Path:
    """``seg`` (ADE20K layout) with the first ``fraction`` of its training images and all its validation images."""
    if fraction >= 1:
        return seg
    images = sorted((seg / "images" / "training").iterdir())
    keep = round(len(images) * fraction)
    if keep < min_images:
        raise McqError(f"{seg}: {fraction:.0%} of {len(images)} labelled images is {keep}, fewer than a batch of "
                       f"{min_images}; raise --n-seg or --fractions")
    if not (out / "objectInfo150.txt").is_file():
        shutil.copytree(seg, out, ignore=shutil.ignore_patterns("training"))
        for kind, suffix in (("images", ".jpg"), ("annotations", ".png")):
            (out / kind / "training").mkdir()
            for image in images[:keep]:
                name = image.with_suffix(suffix).name
                shutil.copy(seg / kind / "training" / name, out / kind / "training" / name)
    return out


def run_caption_quality(cfg: CaptionQualityConfig) -> dict:
    """Run every arm for every seed; write ``OUT/caption_quality.json`` (rewritten after each arm, ``complete`` once
    all have run) and return what it holds."""
    from mcq.data.synth_clip import synth_clip
    from mcq.train.evaluate import evaluate
    from mcq.train.config import TrainConfig
    from mcq.train.train import train
    from mcq.train.zero_shot import zero_shot
    from mcq.io import write_json

    start = time.perf_counter()
    out = Path(cfg.out)
    data = out / "data"
    _stage(f"writing the synthetic world to {data}")
    synth_clip(data, cfg.n_train, cfg.n_val, cfg.data_size, seed=cfg.data_seed, noise=cfg.noise, n_seg=cfg.n_seg)
    subsets = {f: label_subset(data / "seg", f, out / f"data-seg-{round(100 * f)}", cfg.seg_batch)
               for f in cfg.fractions}
    common = dict(workers=cfg.workers, accelerator="cpu", exist_ok=True)

    def segment(init: str | None, seed: int, where: Path, labels: Path, steps: int, frozen: bool) -> float:
        return train(TrainConfig(
            task="seg", backbone=cfg.encoder, head="fpn", data=str(labels), init=init, freeze_encoder=frozen,
            max_steps=steps, batch_size=cfg.seg_batch, img_size=cfg.seg_img_size, lr=cfg.seg_lr, val_every=steps,
            out=str(where), seed=seed, **common))[1]["mIoU"]

    rows = []
    for seed in cfg.seeds:
        for arm, captions in ARMS.items():
            run = out / f"{arm.replace('+', '_')}-seed{seed}"
            row = {"arm": arm, "seed": seed, "captions": captions, "recall": None, "zero_shot": None}
            t = time.perf_counter()
            init = None
            if captions:
                _stage(f"seed {seed}, arm {arm}: CLIP pretraining on {captions} ({cfg.clip_steps} steps)")
                clip_run, metrics = train(TrainConfig(
                    task="clip", model=cfg.encoder, data=str(data / "train"), val_data=str(data / "val"),
                    captions=captions, max_steps=cfg.clip_steps, batch_size=cfg.clip_batch, img_size=cfg.clip_img_size,
                    val_every=cfg.clip_steps, text_width=cfg.text_width, text_layers=cfg.text_layers,
                    out=str(run / "clip"), seed=seed, **common))
                last = clip_run / "checkpoints" / "last.ckpt"
                row["recall"] = evaluate("clip", last, data / "val", workers=0, accelerator="cpu",
                                         captions="gt,syn")["recall"]
                zs = zero_shot(last, data / "zeroshot", cfg.zero_shot_template, workers=0)
                row["zero_shot"] = {"top1": zs["top1"], "top5": zs["top5"], "chance_top1": zs["chance_top1"]}
                init = metrics["openclip_checkpoint"]
            row["clip_s"] = round(time.perf_counter() - t, 1)
            _stage(f"seed {seed}, arm {arm}: SemanticFPN on the frozen encoder ({cfg.probe_steps} steps)")
            t = time.perf_counter()
            row["probe"] = segment(init, seed, run / "probe", data / "seg", cfg.probe_steps, True)
            row["finetune"] = {}
            for f, labels in subsets.items():
                _stage(f"seed {seed}, arm {arm}: SemanticFPN fine-tuned on {f:.0%} of the labels ({cfg.seg_steps} "
                       "steps)")
                row["finetune"][str(f)] = segment(init, seed, run / f"seg-{round(100 * f)}", labels, cfg.seg_steps,
                                                  False)
            row["seg_s"] = round(time.perf_counter() - t, 1)
            rows.append(row)
            result = {"config": asdict(cfg), "arms": dict(ARMS), "complete": len(rows) == len(cfg.seeds) * len(ARMS),
                      "rows": rows, **summarize(rows), "wall_s": round(time.perf_counter() - start, 1)}
            write_json(out / "caption_quality.json", result)  # after every arm: an interrupted run keeps its rows
    return result


def scores(row: dict) -> dict[str, float]:
    """A row's scores by name: zero-shot top-1 and top-5 (CLIP arms), probe mIoU, and fine-tuned mIoU per share of
    labels."""
    out = {ZERO_SHOT: row["zero_shot"]["top1"], ZERO_SHOT_5: row["zero_shot"]["top5"]} if row["zero_shot"] else {}
    out[PROBE] = row["probe"]
    out.update({f"mIoU @{float(f):.0%}": v for f, v in row["finetune"].items()})
    return out


def _spread(xs: list[float]) -> dict:
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}


def summarize(rows: list[dict]) -> dict:
    """``summary``: per arm, each score's mean and sample std over seeds and the mean recall@1 per caption kind;
    ``gaps``: per comparison (``COMPARISONS``), each shared score's paired gap over the seeds both arms ran;
    ``verdicts``: one line per comparison."""
    by_arm: dict[str, dict[int, dict]] = {}
    for r in rows:
        by_arm.setdefault(r["arm"], {})[r["seed"]] = r
    summary = {}
    for arm, runs in by_arm.items():
        per_score: dict[str, list[float]] = {}
        for r in runs.values():
            for name, v in scores(r).items():
                per_score.setdefault(name, []).append(v)
        summary[arm] = {name: _spread(xs) for name, xs in per_score.items()}
        recalls = [r["recall"] for r in runs.values() if r["recall"]]
        if recalls:
            summary[arm]["R@1"] = {kind: statistics.fmean((rc[kind]["i2t_R@1"] + rc[kind]["t2i_R@1"]) / 2
                                                          for rc in recalls) for kind in recalls[0]}
    gaps, verdicts = {}, []
    for a, b in COMPARISONS:
        seeds = sorted(set(by_arm.get(a, {})) & set(by_arm.get(b, {})))
        if not seeds:
            continue
        sa, sb = [scores(by_arm[a][s]) for s in seeds], [scores(by_arm[b][s]) for s in seeds]
        shared = [name for name in sa[0] if name in sb[0]]
        gaps[f"{a} - {b}"] = {name: paired_gap([x[name] for x in sa], [y[name] for y in sb]) for name in shared}
        verdicts.append(verdict(a, b, gaps[f"{a} - {b}"]))
    return {"summary": summary, "gaps": gaps, "verdicts": verdicts}


def format_caption_quality_table(result: dict) -> str:
    """One line per score: each arm's mean ± std over seeds, each comparison's gap with its 95% interval; recall@1;
    every arm's scores seed by seed; a legend and the verdicts."""
    arms, pairs = list(result["summary"]), list(result["gaps"])
    names = list(dict.fromkeys(n for s in result["summary"].values() for n in s if n != "R@1"))
    lines = [f"{'score':<17}" + "".join(f"{a:>15}" for a in arms) + "".join(f"{p:>23}" for p in pairs)]
    for n in names:
        cells = "".join(f"{_pm(result['summary'][a][n]) if n in result['summary'][a] else '-':>15}" for a in arms)
        gaps = "".join(f"{_interval(result['gaps'][p][n]) if n in result['gaps'][p] else '-':>23}" for p in pairs)
        lines.append(f"{n:<17}{cells}{gaps}")
    for kind, label in (("gt", "R@1 web caption"), ("syn", "R@1 synthetic")):
        lines.append(f"{label:<17}" + "".join(f"{_recall(result['summary'][a], kind):>15}" for a in arms))
    lines.append("")
    lines.append(f"{'arm':<8}{'seed':>5}" + "".join(f"{n:>{len(n) + 2}}" for n in names))
    for row in result["rows"]:
        mine = scores(row)
        lines.append(f"{row['arm']:<8}{row['seed']:>5}" + "".join(
            f"{f'{100 * mine[n]:.2f}' if n in mine else '-':>{len(n) + 2}}" for n in names))
    c = result["config"]
    lines.append(f"in %: mean ± std over seeds {','.join(map(str, c['seeds']))}; gaps: mean of per-seed differences "
                 "[95% interval], * where it excludes 0")
    lines.append(f"zero-shot: {c['zero_shot_template']!r} over 32 classes (chance 3.1% / 15.6%); R@1: recall@1 on "
                 f"{c['n_val']} held-back pairs (chance {100 / c['n_val']:.2f}%)")
    return "\n".join([line.rstrip() for line in lines] + [f"verdict: {v}" for v in result["verdicts"]])


def _pm(s: dict) -> str:
    return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"


def _recall(s: dict, kind: str) -> str:
    return f"{100 * s['R@1'][kind]:.2f}" if "R@1" in s else "-"


def _interval(g: dict) -> str:
    if g["low"] is None:
        return f"{100 * g['mean']:+.2f}"
    return f"{100 * g['mean']:+.2f} [{100 * g['low']:+.1f}, {100 * g['high']:+.1f}]{'*' if g['separated'] else ' '}"
