"""CLIP pretraining (``mcq train clip``): the DataCompDR shard reader and its bad inputs, the two-caption loss against
a hand computation, recall@k, and a tiny run whose open_clip checkpoint initialises a segmentation model."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
import webdataset as wds
from PIL import Image

from conftest import TINY_CLIP, tiny_argv
from mcq.cli import main
from mcq.data.clip_shards import SampleDecoder, TrainSamples, clip_pipeline, list_shards, parse_captions
from mcq.data.synth_clip import synth_clip
from mcq.train.clip_module import multi_caption_loss
from mcq.tasks.metrics import retrieval_recall
from mcq.errors import McqError


def _decoder(captions=("gt", "syn"), teacher=False, train=False) -> SampleDecoder:
    transform = open_clip.image_transform(32, False)
    return SampleDecoder(transform, open_clip.get_tokenizer("MobileCLIP2-S0", context_length=16), captions, teacher,
                         train)


def _batches(shards, **kw) -> list[dict]:
    return list(clip_pipeline(list_shards(shards), _decoder(**kw), batch_size=4))


def _cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# --- the shards ------------------------------------------------------------------------------------------------


def test_synth_shards_are_in_the_datacompdr_layout(clip_data):
    with tarfile.open(clip_data / "train" / "00000.tar") as tar:
        names = tar.getnames()
    assert {n.split(".", 1)[1] for n in names} == {"jpg", "txt", "syn.json", "json", "npz", "paug.json"}
    sample = next(iter(wds.WebDataset(str(clip_data / "train" / "00000.tar"), shardshuffle=False).decode()))
    syn = sample["syn.json"]["syn_text"]
    assert len(syn) == 5 and all(isinstance(s, str) and s for s in syn)
    assert set(sample["json"]) == {"uid", "sha256"}
    assert sample["npz"]["text_emb"].shape[0] == 1 + len(syn)
    assert (clip_data / "seg" / "objectInfo150.txt").is_file()
    assert len(list((clip_data / "seg" / "images" / "training").glob("*.jpg"))) == 4


def test_synthetic_captions_name_what_is_drawn():
    from mcq.data.synth_clip import clip_scene, synthetic_captions

    rng = np.random.default_rng(3)
    for _ in range(5):
        _, lab, objects, ground = clip_scene(64, rng)
        for caption in synthetic_captions(objects, ground, rng):
            for o in objects:
                assert f"{o.colour} {o.cls}" in caption
        drawn = set(np.unique(lab))
        assert {["sky", "grass", "road", "water", "sun", "house", "tree", "rock"].index(o.cls) + 1 for o in objects} <= drawn


def test_web_captions_are_noisy_at_the_given_rate(tmp_path):
    from mcq.data.synth_clip import UNRELATED

    for noise in (0.0, 1.0):
        data = synth_clip(tmp_path / str(noise), n_train=40, n_val=1, size=32, per_shard=40, n_seg=0, noise=noise)
        samples = list(wds.WebDataset(str(data / "train" / "00000.tar"), shardshuffle=False).decode())
        junk = [s["txt"] for s in samples if s["txt"] == "" or s["txt"] in UNRELATED]
        assert (len(junk) > 10) == (noise == 1.0), junk


def test_reader_streams_every_sample_with_its_captions(clip_data):
    batches = _batches(clip_data / "train")
    assert sum(len(b["image"]) for b in batches) == 16
    b = batches[0]
    assert b["image"].shape == (4, 3, 32, 32) and b["gt"].shape == b["syn"].shape == (4, 16)
    assert b["skipped"] == 0
    assert not torch.equal(b["gt"], b["syn"])


def test_reader_takes_a_brace_pattern_and_carries_teacher_embeddings(clip_data):
    spec = str(clip_data / "train" / "{00000..00001}.tar")
    assert len(list_shards(spec)) == 2
    b = _batches(spec, teacher=True)[0]
    assert b["teacher_image"].shape == b["teacher_gt"].shape == b["teacher_syn"].shape == (4, 64)


def test_training_stream_is_endless(clip_data):
    pipe = clip_pipeline(TrainSamples(list_shards(clip_data / "train"), shuffle_buffer=16), _decoder(train=True),
                         batch_size=4)
    it = iter(pipe)
    seen = [next(it)["image"] for _ in range(6)]  # 24 samples from 16: the shards repeat
    assert all(len(x) == 4 for x in seen)


# --- bad input ---------------------------------------------------------------------------------------------------


def _write_shard(path: Path, samples: list[dict]) -> Path:
    with wds.TarWriter(str(path)) as sink:
        for s in samples:
            sink.write(s)
    return path


def _jpg(seed: int = 0) -> bytes:
    b = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(b, "JPEG")
    return b.getvalue()


def _sample(i: int, **over) -> dict:
    s = {"__key__": f"s{i:04d}", "jpg": _jpg(i), "txt": "a red house", "syn.json": {"syn_text": ["a red house"]},
         "json": {"uid": str(i), "sha256": "0"}}
    s.update(over)
    return {k: v for k, v in s.items() if v is not None}


def test_a_shard_that_is_not_a_tar_is_named(tmp_path):
    bad = tmp_path / "00000.tar"
    bad.write_bytes(b"this is not a tar archive" * 40)
    with pytest.raises(McqError, match=f"{bad}: not a tar"):
        list_shards(tmp_path)


def test_an_empty_shard_list_is_refused(tmp_path):
    with pytest.raises(McqError, match="no .tar shards"):
        list_shards(tmp_path)
    with pytest.raises(McqError, match="no such shard"):
        list_shards(str(tmp_path / "{0..1}.tar"))


def test_missing_syn_json_is_named_when_synthetic_captions_are_asked(tmp_path):
    shard = _write_shard(tmp_path / "a.tar", [_sample(0), _sample(1, **{"syn.json": None})])
    with pytest.raises(McqError, match=rf"{shard}: sample s0001 has no syn.json"):
        _batches(shard)
    assert sum(len(b["image"]) for b in _batches(shard, captions=("gt",))) == 2  # gt alone does not need it


def test_syn_json_without_syn_text_is_named(tmp_path):
    shard = _write_shard(tmp_path / "a.tar", [_sample(0, **{"syn.json": {"captions": ["x"]}})])
    with pytest.raises(McqError, match=rf"{shard}: sample s0000: syn.json has no syn_text"):
        _batches(shard)


def test_undecodable_images_are_skipped_and_counted(tmp_path):
    samples = [_sample(i, jpg=b"garbage" if i in (3, 17) else _jpg(i)) for i in range(40)]
    shard = _write_shard(tmp_path / "a.tar", samples)
    batches = _batches(shard)
    assert sum(len(b["image"]) for b in batches) == 38
    assert sum(b["skipped"] for b in batches) == 2


def test_too_many_undecodable_images_stop_the_run(tmp_path):
    shard = _write_shard(tmp_path / "a.tar", [_sample(i, jpg=b"bad" if i % 3 == 0 else _jpg(i)) for i in range(40)])
    with pytest.raises(McqError, match=rf"{shard}: \d+ of \d+ images could not be decoded"):
        _batches(shard)


def test_bad_captions_flag_and_unknown_model_are_one_line_errors(capsys, clip_data, tmp_path):
    with pytest.raises(McqError, match="--captions"):
        parse_captions("gt,web")
    rc, _, err = _cli(capsys, ["train", "clip", "--model", "MobileCLIP-S9", "--data", clip_data, "--out",
                               tmp_path / "r", *TINY_CLIP])
    assert rc == 2 and err.count("\n") == 1
    assert "unknown CLIP model 'MobileCLIP-S9'" in err and "MobileCLIP2-S0" in err and "mci0" in err
    assert not (tmp_path / "r").exists()
    rc, _, err = _cli(capsys, ["train", "seg", "--model", "MobileCLIP2-S0", "--out", tmp_path / "s"])
    assert rc == 2 and "--model is for clip" in err
    rc, _, err = _cli(capsys, ["eval", "seg", "--checkpoint", tmp_path / "x.ckpt", "--captions", "gt"])
    assert rc == 2 and "--captions is for clip; seg has no captions" in err


# --- the loss and the metric -------------------------------------------------------------------------------------


def _clip_loss_by_hand(img: torch.Tensor, txt: torch.Tensor, scale: float) -> torch.Tensor:
    logits = scale * img @ txt.T
    labels = torch.arange(len(img))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def test_two_caption_loss_is_the_mean_of_clip_losses_on_each_caption():
    g = torch.Generator().manual_seed(0)
    img, gt, syn = (F.normalize(torch.randn(6, 8, generator=g), dim=-1) for _ in range(3))
    scale = torch.tensor(14.0)
    expected = (_clip_loss_by_hand(img, gt, 14.0) + _clip_loss_by_hand(img, syn, 14.0)) / 2
    got = multi_caption_loss(open_clip.ClipLoss(), img, {"gt": gt, "syn": syn}, scale)
    torch.testing.assert_close(got, expected)
    alone = multi_caption_loss(open_clip.ClipLoss(), img, {"syn": syn}, scale)
    torch.testing.assert_close(alone, _clip_loss_by_hand(img, syn, 14.0))
    assert not torch.isclose(got, alone)


def test_distillation_loss_against_a_hand_computation():
    g = torch.Generator().manual_seed(1)
    img, gt, t_img, t_gt = (F.normalize(torch.randn(5, 8, generator=g), dim=-1) for _ in range(4))
    s, ts, w = 10.0, 100.0, 0.75
    student, teacher = s * img @ gt.T, ts * t_img @ t_gt.T
    ce = lambda t, q: -(t.softmax(1) * q.log_softmax(1)).sum(1).mean()  # noqa: E731
    distill = (ce(teacher, student) + ce(teacher.T, student.T)) / 2
    expected = (1 - w) * _clip_loss_by_hand(img, gt, s) + w * distill
    got = multi_caption_loss(open_clip.DistillClipLoss(), img, {"gt": gt}, torch.tensor(s),
                             {"image": t_img, "gt": t_gt}, w, ts)
    torch.testing.assert_close(got, expected)


def test_recall_at_k_on_a_known_similarity_matrix():
    sim = torch.tensor([[0.9, 0.1, 0.0, 0.0],   # image 0: its text first
                        [0.8, 0.5, 0.0, 0.0],   # image 1: its text second
                        [0.0, 0.0, 0.1, 0.7],   # image 2: second
                        [0.0, 0.0, 0.0, 0.6]])  # image 3: first
    r = retrieval_recall(sim, ks=(1, 2))
    assert r["i2t_R@1"] == 0.5 and r["i2t_R@2"] == 1.0
    # text 0: image 0 best; text 1: image 1 best (0.5 > 0.1); text 2: image 2 (0.1) best; text 3: image 2 (0.7) first
    assert r["t2i_R@1"] == 0.75 and r["t2i_R@2"] == 1.0
    assert retrieval_recall(torch.ones(4, 4), ks=(1,))["i2t_R@1"] == 0.0  # ties do not count as found


def test_recipe_is_the_papers_table_11():
    from mcq.train.config import TrainConfig
    from mcq.train.train import resolve_recipe
    from mcq.recipes import load_recipe

    r = load_recipe("clip")
    assert (r.img_size, r.context_length, r.batch_size, r.max_steps, r.warmup_steps) == (224, 77, 65536, 200000, 2000)
    assert (r.lr, r.min_lr, r.schedule, r.betas, r.weight_decay, r.ema) == (1e-3, 1e-6, "cosine", [0.9, 0.95], 0.2, 0.9995)
    assert r.crop_scale == [0.9, 1.0] and r.resolve(0).warmup_steps == 2000
    assert resolve_recipe(TrainConfig(task="clip", max_steps=1000)).resolve(0).warmup_steps == 10  # the 1% share


def test_a_vit_image_tower_takes_the_runs_image_size():
    """open_clip builds a timm ViT at its default size whatever ``image_size`` says; ``create_clip_model`` resizes
    it (e.g. ``--model vit_b16 --img-size 64``)."""
    from mcq.models.clip_model import clip_model_config, create_clip_model

    cfg = clip_model_config("MobileCLIP2-S0", text_width=64, text_layers=1)
    cfg["vision_cfg"]["timm_model_name"] = "vit_tiny_patch16_224"
    model = create_clip_model(cfg, 64).eval()
    assert model.visual.trunk.pos_embed.shape[1] == 1 + 4 * 4
    assert model.encode_image(torch.randn(2, 3, 64, 64)).shape == (2, 512)


# --- the run and the round trip into --init ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_run(clip_data, tmp_path_factory) -> Path:
    """A finished tiny CLIP run (MCi0 image tower) on ``clip_data``, through the CLI. Do not modify it."""
    run = tmp_path_factory.mktemp("runs") / "clip"
    argv = ["train", "clip", "--model", "MobileCLIP2-S0", "--data", clip_data / "train", "--val-data",
            clip_data / "val", "--out", run, *TINY_CLIP]
    assert main([str(a) for a in argv]) == 0
    return run


def test_tiny_clip_run_initialises_a_segmentation_model(capsys, clip_data, clip_run, tmp_path):
    metrics = json.loads((clip_run / "metrics.json").read_text())
    assert metrics["step"] == 2 and metrics["pairs"] == 8 and set(metrics["recall"]) == {"gt", "syn"}
    ckpt = torch.load(clip_run / "checkpoints" / "openclip.pt", map_location="cpu", weights_only=True)
    assert set(ckpt) == {"epoch", "name", "state_dict"}
    assert any(k.startswith("visual.trunk.") for k in ckpt["state_dict"])
    cfg = json.loads((clip_run / "checkpoints" / "open_clip_config.json").read_text())["model_cfg"]
    assert cfg["text_cfg"]["width"] == 64 and cfg["vision_cfg"]["timm_model_name"] == "fastvit_mci0"
    assert cfg["vision_cfg"]["image_size"] == 64

    rc, out, err = _cli(capsys, [*tiny_argv("seg", clip_data / "seg", tmp_path / "seg"), "--init",
                                 clip_run / "checkpoints" / "openclip.pt"])
    assert rc == 0, err
    assert "(openclip layout):" in out and " 0 missing, 0 shape-mismatched" in out


def test_eval_clip_repeats_the_runs_validation(capsys, clip_data, clip_run, tmp_path):
    """``mcq eval clip`` on the held-back shards: the run's own validation step, on last.ckpt (the final weights)."""
    last = clip_run / "checkpoints" / "last.ckpt"
    rc, out, err = _cli(capsys, ["eval", "clip", "--checkpoint", last, "--data", clip_data, "--json",
                                 tmp_path / "r.json", "--workers", 0])
    assert rc == 0, err
    assert "i2t R@1" in out and "pairs" in out
    again = json.loads((tmp_path / "r.json").read_text())
    metrics = json.loads((clip_run / "metrics.json").read_text())
    assert again["pairs"] == 8 and again["recall"] == metrics["recall"]  # recall is a share of 8: exact
    rc, out, err = _cli(capsys, ["eval", "clip", "--checkpoint", last, "--data", clip_data / "val" / "00000.tar",
                                 "--captions", "syn", "--workers", 0])
    assert rc == 0 and "\nsyn " in out and "\ngt " not in out, err


def test_attention_distance_refuses_a_clip_runs_mci_tower(capsys, clip_data, clip_run):
    rc, _, err = _cli(capsys, ["analyze", "attention-distance", "--checkpoint", clip_run / "checkpoints" / "last.ckpt",
                               "--data", clip_data])
    assert rc == 2 and err.count("\n") == 1
    assert "last.ckpt: its encoder fastvit_mci0 (FastVit) is not a timm ViT" in err


def test_distill_run_with_synthetic_captions_only(capsys, clip_data, tmp_path):
    rc, out, err = _cli(capsys, ["train", "clip", "--data", clip_data, "--captions", "syn", "--distill",
                                 "--out", tmp_path / "d", *TINY_CLIP])
    assert rc == 0, err
    metrics = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert metrics["distill"] and metrics["captions"] == ["syn"] and set(metrics["recall"]) == {"syn"}


def test_cli_synth_clip(capsys, tmp_path):
    rc, out, _ = _cli(capsys, ["data", "synth", "clip", "--out", tmp_path / "c", "--train", 4, "--val", 2, "--size",
                               32, "--noise", 0.2])
    assert rc == 0 and "wrote 4 training + 2 validation images" in out
    assert list_shards(tmp_path / "c" / "train")




# --- zero-shot classification ------------------------------------------------------------------------------------


def test_the_zero_shot_split_holds_one_object_of_its_class_per_image(clip_data):
    from mcq.data.synth_clip import COLOURS, OBJECTS

    folders = sorted(p.name for p in (clip_data / "zeroshot").iterdir())
    assert folders == sorted(f"{c}_{o}" for o in OBJECTS for c in COLOURS)
    assert all(len(list((clip_data / "zeroshot" / f).glob("*.jpg"))) == 4 for f in folders)


def test_zero_shot_scores_each_image_by_its_nearest_class_prompt(capsys, clip_data, clip_run, tmp_path):
    """``mcq eval clip --zero-shot``: top-1 as computed by hand (the images' features against the mean of each
    class's normalised prompt embeddings), names from the folders, one template of the user's own."""
    import open_clip
    from torch.nn import functional as F

    from mcq.data.imagefolder import ImageFolder
    from mcq.tasks.checkpoint import read_checkpoint
    from mcq.tasks.specs import clip_normalization
    from mcq.models.clip_model import tokenizer_for

    last = clip_run / "checkpoints" / "last.ckpt"
    rc, out, err = _cli(capsys, ["eval", "clip", "--checkpoint", last, "--zero-shot", clip_data / "zeroshot",
                                 "--templates", "a {} on the grass", "--workers", 0, "--json", tmp_path / "z.json"])
    assert rc == 0, err
    metrics = json.loads((tmp_path / "z.json").read_text())
    assert metrics["classes"] == 32 and metrics["images"] == 128 and metrics["chance_top1"] == 1 / 32
    assert "top1" in out and f"{100 * metrics['top1']:.2f}" in out

    module = read_checkpoint(last, "clip")
    model, m = module.model, module.hparams["model"]
    ds = ImageFolder(clip_data / "zeroshot", None, open_clip.image_transform(64, False, *clip_normalization(m["cfg"])))
    tokens = tokenizer_for(m["name"], module.recipe["context_length"])(
        [f"a {c.replace('_', ' ')} on the grass" for c in ds.classes])
    with torch.no_grad():
        text = F.normalize(model.encode_text(tokens), dim=-1)
        images = torch.stack([ds[i][0] for i in range(len(ds))])
        pred = (model.encode_image(images, normalize=True) @ text.T).argmax(1)
    labels = torch.tensor([label for _, label in ds.samples])
    assert metrics["top1"] == pytest.approx(float((pred == labels).float().mean()))
    assert metrics["top5"] >= metrics["top1"]


def test_zero_shot_refuses_bad_templates_and_names_files(capsys, clip_data, clip_run, tmp_path):
    last = clip_run / "checkpoints" / "last.ckpt"
    rc, _, err = _cli(capsys, ["eval", "clip", "--checkpoint", last, "--zero-shot", clip_data / "zeroshot",
                               "--templates", "a photo"])
    assert rc == 2 and "--templates 'a photo'" in err and "{}" in err
    names = tmp_path / "names.txt"
    names.write_text("house\ntree\n")
    rc, _, err = _cli(capsys, ["eval", "clip", "--checkpoint", last, "--zero-shot", clip_data / "zeroshot",
                               "--class-names", names])
    assert rc == 2 and "names.txt: 2 class names for 32 class folders" in err
    rc, _, err = _cli(capsys, ["eval", "clip", "--checkpoint", last, "--zero-shot", clip_data / "zeroshot",
                               "--class-names", tmp_path / "absent.txt"])
    assert rc == 2 and "absent.txt: missing" in err
    rc, _, err = _cli(capsys, ["eval", "clip", "--checkpoint", last, "--zero-shot", tmp_path / "nowhere"])
    assert rc == 2 and "nowhere: missing" in err
