"""Every registered encoder: forward at two resolutions, declared channels/strides; seg heads forward+backward."""

import pytest
import timm
import torch

from mcq.models import create_encoder, create_seg_model, list_encoders

ENCODERS = [info.name for info in list_encoders()]
HEAVY = {"mci3", "mci4", "swin_l"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in ENCODERS]
)
def test_encoder_features_match_declared_channels_and_strides(name):
    enc = create_encoder(name).eval()
    s = enc.max_stride
    for h, w in [(2 * s, 2 * s), (3 * s, 2 * s)]:
        with torch.no_grad():
            feats = enc(torch.randn(1, 3, h, w))
        assert [f.shape[1] for f in feats] == enc.channels
        assert [(f.shape[2], f.shape[3]) for f in feats] == [(h // st, w // st) for st in enc.strides]
    assert enc.strides == sorted(enc.strides) and enc.strides[0] == 4


@pytest.mark.parametrize("name", ["mci0", "mci1", "mci2"])
def test_mci_pyramid_includes_the_final_attention_stage(name):
    # ml-fastvit's dense-prediction indices skipped the last stage; MobileCLIP's last stage is attention
    enc = create_encoder(name)
    last = len(enc.trunk.stages) - 1
    assert enc.indices[-1] == last
    assert enc.channels[-1] == enc.trunk.feature_info[last]["num_chs"]
    assert type(enc.trunk.stages[last].blocks[0]).__name__ == "AttentionBlock"


def test_drop_path_reaches_the_blocks():
    enc = create_encoder("mci0", drop_path=0.2)
    rates = [m.drop_prob for m in enc.modules() if isinstance(m, timm.layers.DropPath)]
    assert rates and max(rates) == pytest.approx(0.2)


@pytest.mark.parametrize("encoder,head", [("mci0", "fpn"), ("mci0", "upernet"), ("vit_b16", "upernet")])
def test_seg_forward_backward(encoder, head):
    model = create_seg_model(encoder, num_classes=7, head=head)
    assert model.cfg.head == head
    x = torch.randn(2, 3, 64, 96)
    logits, aux = model.forward_train(x)
    assert logits.shape == (2, 7, 64, 96) and (aux is None) == (head == "fpn")
    (logits.logsumexp(1).mean() + (0 if aux is None else aux.logsumexp(1).mean())).backward()
    for part in filter(None, (model.encoder, model.neck, model.decode_head, model.auxiliary_head)):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)


def test_default_heads_follow_the_paper():
    assert create_seg_model("mci0", 3).cfg.head == "fpn"
    assert create_seg_model("vit_b16", 3).cfg.head == "upernet"


def test_reparameterized_seg_model_matches_eager():
    # export reparameterizes the whole task model, not the bare encoder
    model = create_seg_model("mci0", num_classes=5).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        fused = timm.utils.reparameterize_model(model)
        out = fused(x)
    assert not any(type(m).__name__ == "MobileOneBlock" and m.reparam_conv is None for m in fused.modules())
    torch.testing.assert_close(out, ref, atol=1e-3, rtol=1e-3)
