"""``mcq analyze attention-distance``: the distance of attention maps with a known answer, the maps read from timm's
blocks against a hand computation, and the command on a tiny random-init ViT in the OpenCLIP layout."""

from __future__ import annotations

import json
import math

import pytest
import timm
import torch

from ckpt_layouts import save_openclip
from mcq.analysis.attention_distance import attention_maps, mean_attention_distance, trunk_attention_distance
from mcq.cli import main
from mcq.io import write_json
from mcq.models.clip_model import clip_model_config, create_clip_model


def _uniform(k: int, heads: int = 2, prefix: int = 0) -> torch.Tensor:
    n = prefix + k * k
    return torch.full((1, heads, n, n), 1 / n)


def test_uniform_attention_over_a_2x2_grid():
    # 16 query-key pairs: 4 at distance 0, 8 at one patch, 4 at sqrt(2) patches
    want = 16 * (8 + 4 * math.sqrt(2)) / 16
    got = mean_attention_distance(_uniform(2), (2, 2), stride=16)
    torch.testing.assert_close(got, torch.full((1, 2), want, dtype=torch.float64))


def test_uniform_attention_over_a_3x3_grid():
    # per axis the offset is 0 with probability 3/9, 1 with 4/9, 2 with 2/9, independently in rows and columns
    p = {0: 3 / 9, 1: 4 / 9, 2: 2 / 9}
    want = 10 * sum(p[a] * p[b] * math.hypot(a, b) for a in p for b in p)
    torch.testing.assert_close(mean_attention_distance(_uniform(3), (3, 3), stride=10),
                               torch.full((1, 2), want, dtype=torch.float64))


def test_one_hot_attention_at_a_fixed_offset_gives_its_length():
    rows, cols, stride = 5, 6, 16
    attn = torch.zeros(1, 1, rows * cols, rows * cols)
    for r in range(rows):
        for c in range(cols):  # (+1, +2) patches away, mirrored where that leaves the grid: always sqrt(5) patches
            dr, dc = (1 if r + 1 < rows else -1), (2 if c + 2 < cols else -2)
            attn[0, 0, r * cols + c, (r + dr) * cols + c + dc] = 1
    got = mean_attention_distance(attn, (rows, cols), stride)
    torch.testing.assert_close(got, torch.tensor([[stride * math.sqrt(5)]], dtype=torch.float64))
    torch.testing.assert_close(mean_attention_distance(torch.eye(30)[None, None], (rows, cols), stride),
                               torch.zeros(1, 1, dtype=torch.float64))  # attending to itself: distance 0


def test_prefix_tokens_are_left_out_and_patch_weights_renormalised():
    k, prefix = 3, 2
    attn = _uniform(k, prefix=prefix).clone()
    attn[..., :prefix] = 0.3  # most of each row on the CLS/register tokens, the rest spread evenly over the patches
    attn[..., prefix:] = 0.4 / (k * k)
    attn[..., :prefix, :] = torch.rand(prefix, prefix + k * k)  # the prefix tokens' own rows do not count
    torch.testing.assert_close(mean_attention_distance(attn, (k, k), 10, prefix),
                               mean_attention_distance(_uniform(k), (k, k), 10))
    with pytest.raises(ValueError, match="attention over 11 tokens, expected 1 \\+ 3x3"):
        mean_attention_distance(attn, (3, 3), 10, prefix=1)


@pytest.fixture(scope="module")
def tiny_vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=64, depth=2, num_classes=0).eval()


def test_maps_read_from_timm_blocks_are_softmax_qk(tiny_vit):
    x = torch.randn(2, 3, 64, 64)
    before = tiny_vit(x)
    with attention_maps(tiny_vit) as maps:
        after = tiny_vit(x)
    torch.testing.assert_close(after, before)  # the model computes the same thing, hooked or not
    assert tiny_vit.blocks[0].attn.fused_attn == timm.layers.use_fused_attn()  # restored
    assert len(maps) == 2 and maps[0].shape == (2, 3, 17, 17)

    block = tiny_vit.blocks[0]  # by hand from the first block's input
    tokens = tiny_vit._pos_embed(tiny_vit.patch_embed(x))
    q, k, _ = block.attn.qkv(block.norm1(tokens)).reshape(2, 17, 3, 3, 64).permute(2, 0, 3, 1, 4)
    torch.testing.assert_close(maps[0], (q @ k.transpose(-2, -1) / 8).softmax(-1))

    d = trunk_attention_distance(tiny_vit, x)
    assert d.shape == (2, 2, 3)
    torch.testing.assert_close(d[:, 0], mean_attention_distance(maps[0], (4, 4), 16, prefix=1))


# --- the command -------------------------------------------------------------------------------------------------


def _tiny_openclip_vit(tmp_path):
    """A random-init open_clip model whose image tower is timm's ViT-Ti/16 (224 px), as open_clip's training saves
    it, with ``open_clip_config.json`` (the hub's layout) beside it."""
    cfg = clip_model_config("MobileCLIP2-S0", text_width=64, text_layers=1)
    cfg["vision_cfg"].update(timm_model_name="vit_tiny_patch16_224", image_size=224)
    model = create_clip_model(cfg, 224)
    path = save_openclip(model.state_dict(), tmp_path / "epoch_1", "openclip_train")
    write_json(tmp_path / "open_clip_config.json", {"model_cfg": cfg})
    return path, model


def _cli(capsys, argv):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return (rc, *capsys.readouterr())


def test_cli_on_a_tiny_openclip_vit(capsys, tmp_path, synth_data):
    ckpt, model = _tiny_openclip_vit(tmp_path)
    rc, out, err = _cli(capsys, ["analyze", "attention-distance", "--checkpoint", ckpt, "--data", synth_data,
                                 "--images", 2, "--out", tmp_path / "a"])
    assert rc == 0, err
    assert "vit_tiny_patch16_224" in out and "layer 12:" in out
    r = json.loads((tmp_path / "a" / "attention_distance.json").read_text())
    assert (r["layers"], r["heads"], r["images"], r["img_size"], r["patch_stride"]) == (12, 3, 2, 224, 16)
    # a 14x14 grid of 16 px patches: every distance lies between 0 and the diagonal
    assert all(0 < d < 16 * 13 * math.sqrt(2) for heads in r["mean_distance_px"] for d in heads)
    assert r["uniform_px"] == pytest.approx(mean_attention_distance(_uniform(14), (14, 14), 16)[0, 0].item())
    assert (tmp_path / "a" / "attention_distance.png").read_bytes()[:4] == b"\x89PNG"

    # the weights were loaded: the same numbers from the model in memory
    from mcq.analysis.attention_distance import _load_image, list_images

    images = torch.stack([_load_image(f, 224, (0.5,) * 3, (0.5,) * 3) for f in list_images(synth_data)[:2]])
    want = trunk_attention_distance(model.visual.trunk.eval(), images).mean(0)
    torch.testing.assert_close(torch.tensor(r["mean_distance_px"], dtype=torch.float64), want)


@pytest.mark.slow
def test_openclip_vit_b16_without_a_config_is_read_into_vit_b16(capsys, tmp_path, synth_data):
    """MobileCLIP-B's image tower (``visual.trunk.*``, as open_clip saves it) with no open_clip_config.json beside it:
    read into mcq's vit_b16 (dynamic size: analysed here at 64 px, a 4x4 grid)."""
    import open_clip

    from ckpt_layouts import randomize_

    trunk = randomize_(open_clip.create_model("MobileCLIP-B", pretrained=None).visual.trunk, seed=1)
    ckpt = save_openclip({f"visual.trunk.{k}": v for k, v in trunk.state_dict().items()}, tmp_path / "b", "bare")
    rc, out, err = _cli(capsys, ["analyze", "attention-distance", "--checkpoint", ckpt, "--data", synth_data,
                                 "--images", 1, "--img-size", 64, "--out", tmp_path / "a"])
    assert rc == 0, err
    r = json.loads((tmp_path / "a" / "attention_distance.json").read_text())
    assert (r["encoder"], r["layers"], r["heads"], r["patch_stride"]) == ("vit_b16", 12, 12, 16)


def test_a_non_vit_encoder_is_a_one_line_error_naming_it(capsys, tmp_path, synth_data, trained_ckpt):
    rc, _, err = _cli(capsys, ["analyze", "attention-distance", "--checkpoint", trained_ckpt, "--data", synth_data])
    assert rc == 2 and err.count("\n") == 1
    assert f"{trained_ckpt}: its encoder mci0 (FastVit) is not a timm ViT" in err

    cfg = clip_model_config("MobileCLIP2-S0", text_width=64, text_layers=1)  # an MCi tower, OpenCLIP layout
    ckpt = save_openclip(create_clip_model(cfg, 64).state_dict(), tmp_path / "mci", "bare")
    rc, _, err = _cli(capsys, ["analyze", "attention-distance", "--checkpoint", ckpt, "--data", synth_data])
    assert rc == 2 and err.count("\n") == 1 and f"{ckpt}: not a ViT image tower" in err

    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "vit").mkdir()
    vit, _ = _tiny_openclip_vit(tmp_path / "vit")
    rc, _, err = _cli(capsys, ["analyze", "attention-distance", "--checkpoint", vit, "--data", empty])
    assert rc == 2 and f"{empty}: no images" in err
    rc, _, err = _cli(capsys, ["analyze", "attention-distance", "--checkpoint", vit, "--data", synth_data,
                               "--images", 0])
    assert rc == 2 and "--images 0: give at least one image" in err


@pytest.mark.slow
def test_a_vit_clip_runs_ckpt_and_openclip_checkpoint_agree(capsys, tmp_path):
    """``mcq train clip --model vit_b16`` at 64 px: its Lightning .ckpt and its openclip.pt (built from the
    open_clip_config.json beside it) are the same tower (openclip.pt holds the EMA weights, as last.ckpt does)."""
    from mcq.data.synth_clip import synth_clip

    data = synth_clip(tmp_path / "data", n_train=8, n_val=4, size=64, per_shard=8, n_seg=2)
    argv = ["train", "clip", "--model", "vit_b16", "--data", data, "--out", tmp_path / "run", "--text-width", 64,
            "--text-layers", 1, "--img-size", 64, "--batch-size", 4, "--max-steps", 1, "--val-every", 1,
            "--workers", 0, "--accelerator", "cpu"]
    rc, _, err = _cli(capsys, argv)
    assert rc == 0, err
    got = {}
    for name in ("last.ckpt", "openclip.pt"):
        rc, _, err = _cli(capsys, ["analyze", "attention-distance", "--checkpoint", tmp_path / "run" / "checkpoints" /
                                   name, "--data", data, "--images", 2, "--out", tmp_path / name])
        assert rc == 0, err
        got[name] = json.loads((tmp_path / name / "attention_distance.json").read_text())
    assert got["last.ckpt"]["img_size"] == got["openclip.pt"]["img_size"] == 64
    assert got["last.ckpt"]["encoder"] == got["openclip.pt"]["encoder"] == "vit_base_mci_224"
    torch.testing.assert_close(torch.tensor(got["last.ckpt"]["mean_distance_px"]),
                               torch.tensor(got["openclip.pt"]["mean_distance_px"]))
