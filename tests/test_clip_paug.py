"""DataCompDR's stored augmentations (``paug.json``) replayed for ``--distill``: the replay is torchvision's, the image
the student sees is the one the chosen teacher embedding belongs to, and bad ``paug.json`` is a one-line error."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import webdataset as wds
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F
from torchvision.transforms.autoaugment import _apply_op

from mcq.data.clip_shards import SampleDecoder, clip_pipeline, parse_sample
from mcq.data.paug import PaugReplay
from mcq.data.synth_clip import OracleTeacher
from mcq.errors import McqError

PLAIN = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # no normalisation: the replayed pixels in [0, 1]


def _image(seed: int = 0, size: tuple[int, int] = (48, 40)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8))


def test_a_stored_crop_flip_and_randaugment_replay_as_torchvision_applies_them():
    img = _image()
    crop = F.resized_crop(img, 3, 5, 20, 25, [32, 32], InterpolationMode.BICUBIC, antialias=True)
    replay = PaugReplay(32, *PLAIN, ops=("random_resized_crop",))
    assert torch.equal(replay(img, [[3, 5, 20, 25]], "s"), F.to_tensor(crop))
    flip = PaugReplay(32, *PLAIN, ops=("random_resized_crop", "random_horizontal_flip", "rand_augment"))
    expected = _apply_op(F.hflip(crop), "Rotate", 9.0, InterpolationMode.NEAREST, None)
    assert torch.equal(flip(img, [[3, 5, 20, 25], True, [[5, 9.0]]], "s"), F.to_tensor(expected))
    assert not torch.equal(flip(img, [[3, 5, 20, 25], False, [[5, 9.0]]], "s"), F.to_tensor(expected))
    erase = PaugReplay(32, *PLAIN, ops=("random_resized_crop", "random_erase"))
    out = erase(img, [[3, 5, 20, 25], [2, 4, 6, 8]], "s")
    assert (out[:, 2:8, 4:12] == 0).all() and torch.equal(out[:, 8:], F.to_tensor(crop)[:, 8:])
    with pytest.raises(McqError, match="paug op 'mixup' cannot be replayed"):
        PaugReplay(32, *PLAIN, ops=("random_resized_crop", "mixup"))


def _raw_samples(shard: Path) -> list[dict]:
    return list(wds.WebDataset(str(shard), shardshuffle=False))


def _decoder(img_size: int = 32) -> SampleDecoder:
    tokenizer = open_clip.get_tokenizer("MobileCLIP2-S0", context_length=16)
    return SampleDecoder(open_clip.image_transform(img_size, True), tokenizer, ("gt", "syn"), True, True,
                         replay=PaugReplay(img_size, *PLAIN))


def test_the_student_sees_the_augmentation_of_its_teacher_embedding(clip_data):
    """For each sample (each with its own seed, so both augmentations get drawn): the image fed is the replay of
    ``paug.json`` entry ``a`` for the ``a`` whose ``image_emb`` row is the teacher's; and the synthetic teacher's
    rows differ as the codes of their augmented pixels do."""
    raw = _raw_samples(clip_data / "train" / "00000.tar")
    outs = list(_decoder()([{**s, "__seed__": i} for i, s in enumerate(raw)]))
    teacher, replay, chosen = OracleTeacher(seed=0), PaugReplay(32, *PLAIN), set()
    for s, out in zip(raw, outs):
        item = parse_sample(s, ("gt", "syn"), teacher=True, paug=True)
        a = next(a for a, row in enumerate(item.image_emb) if torch.equal(out["teacher_image"], torch.from_numpy(row)))
        chosen.add(a)
        assert torch.equal(out["image"], replay(item.image, item.paug[a], "s"))
        assert not torch.equal(out["image"], replay(item.image, item.paug[1 - a], "s"))
        codes = [teacher.pixel_code(item.image, p) for p in item.paug]
        diff, code_diff = item.image_emb[a] - item.image_emb[1 - a], codes[a] - codes[1 - a]
        assert diff @ code_diff / np.linalg.norm(diff) / np.linalg.norm(code_diff) > 0.9
    assert chosen == {0, 1}


def _npz(rows: int) -> bytes:
    b = io.BytesIO()
    np.savez(b, image_emb=np.ones((rows, 8), np.float32), text_emb=np.ones((2, 8), np.float32))
    return b.getvalue()


def _shard(tmp_path: Path, paug: bytes | None) -> Path:
    jpg = io.BytesIO()
    _image().save(jpg, "JPEG")
    sample = {"__key__": "s0007", "jpg": jpg.getvalue(), "txt": "a house", "syn.json": {"syn_text": ["a red house"]},
              "npz": _npz(2), **({"paug.json": paug} if paug is not None else {})}
    with wds.TarWriter(str(tmp_path / "a.tar")) as sink:
        sink.write(sample)
    return tmp_path / "a.tar"


CROP = [1, 2, 30, 30]


@pytest.mark.parametrize("paug, message", [
    (None, "has no paug.json; --distill replays"),
    (b"{not json", ": paug.json is not JSON"),
    (json.dumps({"augs": []}).encode(), ": paug.json has no param_aug list"),
    (json.dumps({"param_aug": [[CROP, []]]}).encode(), ": paug.json has 1 augmentations, npz image_emb has 2"),
    (json.dumps({"param_aug": [[CROP, [[99, 1.0]]]] * 2}).encode(), r"rand_augment .*unknown RandAugment op 99"),
    (json.dumps({"param_aug": [[CROP]] * 2}).encode(), r"does not list 2 parameters \(random_resized_crop, rand_"),
    (json.dumps({"param_aug": [[[1, 2, 0, 30], []]] * 2}).encode(), r"resized_crop \[1, 2, 0, 30\]: an empty crop"),
])
def test_bad_paug_is_a_one_line_error_naming_the_sample(tmp_path, paug, message):
    shard = _shard(tmp_path, paug)
    with pytest.raises(McqError, match=rf"{shard}: sample s0007.*{message}") as e:
        list(clip_pipeline([str(shard)], _decoder(), batch_size=1))
    assert "\n" not in str(e.value)


def test_paug_is_read_only_when_it_is_replayed(tmp_path):
    """Without --distill (no teacher) and in validation, a sample without paug.json is fine."""
    shard = _shard(tmp_path, None)
    tokenizer = open_clip.get_tokenizer("MobileCLIP2-S0", context_length=16)
    for teacher in (False, True):
        decoder = SampleDecoder(open_clip.image_transform(32, False), tokenizer, ("gt", "syn"), teacher, False)
        assert len(list(clip_pipeline([str(shard)], decoder, batch_size=1))) == 1
