"""``mcq.models.clip_init``: CLIP checkpoints in every layout give the trunk the CLIP model's own features, and
unusable files are refused with a one-line ``McqError`` naming the file.

All weights are random (no downloads): each source model is perturbed by ``randomize_`` so that a weight or BN
statistic that failed to load changes the features, and each test first checks that an encoder which has not
loaded the file computes different features.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

import open_clip
import pytest
import timm
import torch
from timm.models.fastvit import checkpoint_filter_fn

from ckpt_layouts import OPENCLIP_FORMATS, apple_mobileclip, randomize_, save_openclip
from mcq.errors import McqError
from mcq.models import create_encoder
from mcq.models.clip_init import load_clip_init


def trunk_features(trunk: torch.nn.Module, indices: list[int], x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return trunk.forward_intermediates(x, indices=indices, intermediates_only=True)


def mcq_features(encoder, x: torch.Tensor) -> list[torch.Tensor]:
    """MCi: the encoder's output. ViT: the trunk's stride-16 map under the (freshly initialised) ViTDet pyramid."""
    if encoder.neck is not None:
        return trunk_features(encoder.trunk, encoder.indices, x)
    with torch.no_grad():
        return encoder(x)


def assert_features_differ(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    assert [g.shape for g in got] == [w.shape for w in want]
    assert not all(torch.allclose(g, w, atol=1e-3) for g, w in zip(got, want)), "control: unloaded encoder agrees"


def assert_loaded(encoder, report, source_state: dict[str, torch.Tensor]) -> None:
    """Every key the report calls matched holds exactly the checkpoint's tensor (by timm name)."""
    assert report.matched
    own = encoder.trunk.state_dict()
    for k in report.matched:
        assert torch.equal(own[k], source_state[k]), k


def assert_refused(path, call) -> str:
    with pytest.raises(McqError) as err:
        call()
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------------- OpenCLIP


@dataclass
class OpenClipCase:
    name: str
    encoder: str
    model: torch.nn.Module
    x: torch.Tensor
    features: list[torch.Tensor]


OPENCLIP = {  # open_clip model -> (mcq encoder, input size)
    "MobileCLIP2-S0": ("mci0", 64),
    "MobileCLIP-S1": ("mci1", 64),
    "MobileCLIP-B": ("vit_b16", 224),  # open_clip's ViT trunk has a fixed input size
}


@pytest.fixture(
    scope="module",
    params=[
        "MobileCLIP2-S0",
        pytest.param("MobileCLIP-S1", marks=pytest.mark.slow),
        pytest.param("MobileCLIP-B", marks=pytest.mark.slow),
    ],
)
def openclip_case(request) -> OpenClipCase:
    name = request.param
    encoder, size = OPENCLIP[name]
    torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=None).eval()
    trunk = randomize_(model.visual.trunk, seed=1)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    indices = [len(trunk.blocks) - 1] if encoder == "vit_b16" else [0, 1, 2, 3]
    return OpenClipCase(name, encoder, model, x, trunk_features(trunk, indices, x))


@pytest.mark.parametrize("fmt", OPENCLIP_FORMATS)
def test_openclip_checkpoint_gives_open_clips_features(openclip_case, fmt, tmp_path):
    path = save_openclip(openclip_case.model.state_dict(), tmp_path / "epoch_3", fmt)
    encoder = create_encoder(openclip_case.encoder).eval()
    assert_features_differ(mcq_features(encoder, openclip_case.x), openclip_case.features)

    report = load_clip_init(encoder, path)

    assert report.layout == "openclip"
    assert (report.missing, report.mismatched) == ([], [])
    assert_loaded(encoder, report, openclip_case.model.visual.trunk.state_dict())
    got = mcq_features(encoder, openclip_case.x)
    assert len(got) == len(openclip_case.features)
    for g, w in zip(got, openclip_case.features):
        torch.testing.assert_close(g, w)


# ------------------------------------------------------------------------------------- Apple MobileCLIP and timm


@pytest.fixture(scope="module")
def timm_mci0() -> torch.nn.Module:
    """A full timm MCi0 with its 512-d CLIP projection as ``head.fc`` (zero bias, as timm maps Apple's ``head.proj``)."""
    torch.manual_seed(3)
    model = randomize_(timm.create_model("fastvit_mci0"), seed=4).eval()
    with torch.no_grad():
        model.head.fc.bias.zero_()
    return model


def test_apple_layout_inverts_timms_filter(timm_mci0):
    apple = apple_mobileclip(timm_mci0)
    image_keys = [k for k in apple if k.startswith("image_encoder.model.")]
    assert "image_encoder.model.patch_embed.0.rbr_conv.0.conv.weight" in apple  # how timm recognises the layout
    assert {"image_encoder.model.head.proj", "image_encoder.model.network.6.pe.weight"} <= set(apple)
    assert not [k for k in image_keys if any(t in k for t in ("stages.", "stem", "gamma", "conv_kxk", "se.fc1"))]

    back = checkpoint_filter_fn(apple, timm_mci0)

    want = timm_mci0.state_dict()
    assert sorted(back) == sorted(want)
    for k, v in want.items():
        assert torch.equal(back[k], v), k


TIMM_FILES = {  # file content from the timm model, layout mcq must report
    "mobileclip": (apple_mobileclip, "mobileclip"),
    "mobileclip_in_state_dict": (lambda m: {"state_dict": apple_mobileclip(m)}, "mobileclip"),
    "timm": (lambda m: m.state_dict(), "timm"),
}


@pytest.mark.parametrize("kind", TIMM_FILES)
def test_mobileclip_and_timm_checkpoints_give_timms_features(timm_mci0, kind, tmp_path):
    content, layout = TIMM_FILES[kind]
    path = tmp_path / "mobileclip_s0.pt"
    torch.save(content(timm_mci0), path)
    encoder = create_encoder("mci0").eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    want = trunk_features(timm_mci0, [0, 1, 2, 3], x)
    assert_features_differ(mcq_features(encoder, x), want)

    report = load_clip_init(encoder, path)

    assert report.layout == layout
    assert (report.missing, report.mismatched) == ([], [])
    # only what mcq prunes is left over: no text tower, no logit scale
    assert report.unexpected and all(k.startswith(("final_conv.", "head.")) for k in report.unexpected)
    assert_loaded(encoder, report, timm_mci0.state_dict())
    for g, w in zip(mcq_features(encoder, x), want, strict=True):
        torch.testing.assert_close(g, w)


# ------------------------------------------------------------------------------------------------------ refusals


def deeper(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MCi0 plus an 11th block in stage 2: a deeper sibling of the same widths, like MCi1 is."""
    extra = {k.replace("stages.2.blocks.9.", "stages.2.blocks.10."): v for k, v in state.items() if "stages.2.blocks.9." in k}
    return {**state, **extra}


OTHER_ARCHITECTURES = {  # checkpoint from MCi0 weights, encoder it is loaded into, what the report must list
    "deeper_into_mci0": (deeper, "mci0", "unexpected"),
    "mci0_into_mci1": (dict, "mci1", "missing"),
    "mci0_into_mci2": (dict, "mci2", "mismatched"),
}


@pytest.mark.parametrize("case", OTHER_ARCHITECTURES)
def test_other_architecture_is_refused_unless_partial(timm_mci0, case, tmp_path):
    make, encoder_name, problem = OTHER_ARCHITECTURES[case]
    state = make(timm_mci0.state_dict())
    path = save_openclip({"visual.trunk." + k: v for k, v in state.items()}, tmp_path / "epoch_1", "openclip_train")
    encoder = create_encoder(encoder_name).eval()
    before = {k: v.clone() for k, v in encoder.trunk.state_dict().items()}

    msg = assert_refused(path, lambda: load_clip_init(encoder, path))
    assert f"not a {encoder_name} checkpoint" in msg
    assert all(torch.equal(v, before[k]) for k, v in encoder.trunk.state_dict().items()), "refusal loaded weights"

    report = load_clip_init(encoder, path, allow_partial=True)
    listed = getattr(report, problem)
    assert listed, report.summary()
    if problem == "unexpected":
        assert any(k.startswith("stages.2.blocks.10.") for k in listed)
    if problem != "mismatched":  # MCi2 is wider throughout: next to nothing matches
        assert_loaded(encoder, report, state)


@pytest.mark.slow
def test_mobileclip_s1_is_refused_for_mci0(tmp_path):
    model = open_clip.create_model("MobileCLIP-S1", pretrained=None)
    path = save_openclip(model.state_dict(), tmp_path / "epoch_32", "openclip_train")
    encoder = create_encoder("mci0")
    assert_refused(path, lambda: load_clip_init(encoder, path))
    report = load_clip_init(encoder, path, allow_partial=True)
    assert report.matched and any(k.startswith("stages.1.blocks.6.") for k in report.unexpected)


class Opaque:
    """Any class instance: unpickling it means importing and running this module's code."""


class RunsCode:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _truncated(timm_model, path):
    tmp = path.with_name("whole" + path.suffix)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(timm_model.state_dict(), str(tmp))
    else:
        torch.save(timm_model.state_dict(), tmp)
    data = tmp.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_FILES = {  # name -> (file name, writer(timm_model, path), phrase the message must hold)
    "truncated_pt": ("ckpt.pt", _truncated, "cannot read"),
    "truncated_safetensors": ("ckpt.safetensors", _truncated, "cannot read"),
    "text_file": ("ckpt.pt", lambda m, p: p.write_text("this is not a checkpoint\n"), "cannot read"),
    "empty_file": ("ckpt.bin", lambda m, p: p.write_bytes(b""), "cannot read"),
    "list_of_ints": ("ckpt.pt", lambda m, p: torch.save([1, 2, 3], p), "not a checkpoint"),
    "no_tensors": ("ckpt.pt", lambda m, p: torch.save({"epoch": 3, "name": "x"}, p), "not a mci0 checkpoint"),
    "custom_object": ("ckpt.pt", lambda m, p: torch.save({"state_dict": Opaque()}, p), "run code"),
    "no_such_file": ("missing.pt", lambda m, p: None, "no such"),
}


@pytest.fixture(scope="module")
def mci0() -> torch.nn.Module:
    return create_encoder("mci0")


@pytest.mark.parametrize("kind", BAD_FILES)
def test_unusable_file_is_refused(mci0, timm_mci0, kind, tmp_path):
    name, write, phrase = BAD_FILES[kind]
    path = tmp_path / name
    write(timm_mci0, path)
    msg = assert_refused(path, lambda: load_clip_init(mci0, path))
    assert phrase in msg


def test_pickle_that_runs_code_is_refused_without_running_it(mci0, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "mobileclip_s0.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "hook": RunsCode(f"mkdir {shlex.quote(str(marker))}")}, path)

    msg = assert_refused(path, lambda: load_clip_init(mci0, path))

    assert "run code" in msg
    assert not marker.exists(), "loading executed the pickled command"
    torch.load(path, weights_only=False)  # control: the file does run its command when unpickled unsafely
    assert marker.is_dir()
