"""The embedded image-text data: scenes of objects whose class, colour, size and position are known, written as
DataCompDR-layout shards, plus a labelled segmentation set of the same world (ADE20K layout) and a zero-shot
classification split (single-object scenes in class folders named for the object's colour and class).

``syn.json`` holds five accurate captions generated from the scene; ``txt`` is a web-like caption: with probability
``1 - noise`` a terse true one, otherwise wrong (a colour or a class swapped), unrelated, or empty. ``npz`` holds the
embeddings of an oracle "teacher" that sees the scene: a fixed random projection of its objects' attributes
(image: the scene; text: what each caption says, a random vector for an unrelated or empty one). ``paug.json``
holds, in DataCompDR's layout (``mcq.data.paug``), the augmentations (a random resized crop and two RandAugment ops)
the ``image_emb`` rows belong to: row ``a`` adds to the scene's attributes a small code of the augmented pixels
(augmentation ``a`` replayed at ``TEACHER_PX``), so it depends on which augmentation the student is shown.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from torchvision import transforms as T
from tqdm import tqdm

from mcq.data.paug import RAND_AUGMENT_OPS, PaugReplay
from mcq.data.synth import paint, mcq_home, write_ade20k
from mcq.io import staged_dir

OBJECTS = ["house", "tree", "rock", "sun"]
COLOURS = {  # name: (hue, saturation, value)
    "red": (0.0, 0.85, 0.85), "orange": (0.08, 0.9, 0.95), "yellow": (0.15, 0.85, 0.95), "green": (0.33, 0.75, 0.6),
    "blue": (0.62, 0.8, 0.85), "purple": (0.8, 0.6, 0.7), "white": (0.0, 0.0, 0.97), "black": (0.0, 0.0, 0.12),
}
POSITIONS = ["left", "middle", "right"]
SIZES = ["small", "medium", "large"]
UNRELATED = ["buy cheap shoes online", "best deals of the week", "click here for more", "my summer holiday 2019",
             "home page", "untitled", "free shipping on all orders", "stock photo"]
TEACHER_DIM = 64
TEACHER_PX = 16  # the synthetic teacher sees its augmentation at this size
AUGMENTATIONS = 2  # stored augmentations (image_emb rows) per image


@dataclass(frozen=True)
class SceneObject:
    cls: str
    colour: str
    size: str
    position: str

    def phrase(self, rng: np.random.Generator) -> str:
        words = [self.size, self.colour, self.cls] if rng.random() < 0.5 else [self.colour, self.cls]
        where = rng.choice([f"on the {self.position}", f"at the {self.position}", ""]) if self.position != "middle" \
            else rng.choice(["in the middle", "in the centre", ""])
        return " ".join(["a", *words] + ([str(where)] if where else []))


def clip_scene(size: int, rng: np.random.Generator,
               only: tuple[str, str] | None = None) -> tuple[np.ndarray, np.ndarray, list[SceneObject], str]:
    """One RGB uint8 image, its ADE20K-style mask, its objects and its ground ("grass" or "road"); ``only``
    (class, colour): a single object of that class and colour."""
    img = np.zeros((size, size, 3), np.float32)
    lab = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    horizon = int(size * rng.uniform(0.35, 0.5))
    sky = yy < horizon
    ground = str(rng.choice(["grass", "road"]))
    paint(img, lab, sky, "sky", rng)
    paint(img, lab, ~sky, ground, rng)
    objects = []
    slots = rng.permutation(3)[: 1 if only else rng.integers(1, 4)]  # at most one object per third of the image
    for slot in sorted(slots):
        cls, colour = only or (str(rng.choice(OBJECTS)), str(rng.choice(list(COLOURS))))
        k = int(rng.integers(3))
        cx = (slot + rng.uniform(0.35, 0.65)) * size / 3
        r = (0.06 + 0.035 * k) * size
        if cls == "sun":
            cy = rng.uniform(0.1, 0.25) * size
            region = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        else:
            base = rng.uniform(0.75, 0.95) * size
            if cls == "house":
                region = (np.abs(xx - cx) < r) & (yy < base) & (yy > base - 1.6 * r)
                region |= (yy <= base - 1.6 * r) & (np.abs(xx - cx) < (yy - (base - 2.6 * r)))
            elif cls == "tree":
                region = ((xx - cx) / r) ** 2 + ((yy - (base - 1.5 * r)) / (1.5 * r)) ** 2 < 1
            else:
                region = ((xx - cx) / (1.2 * r)) ** 2 + ((yy - base + 0.4 * r) / (0.6 * r)) ** 2 < 1
        paint(img, lab, region, cls, rng, hsv=COLOURS[colour])
        objects.append(SceneObject(cls, colour, SIZES[k], POSITIONS[slot]))
    img = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    return (img * 255).astype(np.uint8), lab, objects, ground


def _listing(objects: list[SceneObject], rng: np.random.Generator) -> str:
    phrases = [o.phrase(rng) for o in objects]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def synthetic_captions(objects: list[SceneObject], ground: str, rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` accurate captions of a scene, each in its own template."""
    templates = [
        "a photo of {objs}",
        "{objs} on {ground} under a blue sky",
        "a {ground} landscape with {objs}",
        "an outdoor scene showing {objs}",
        "a picture of {ground} with {objs}",
        "{objs}, seen on a clear day",
    ]
    picks = rng.choice(len(templates), size=n, replace=n > len(templates))
    return [templates[i].format(objs=_listing(objects, rng), ground=ground) for i in picks]


def web_caption(objects: list[SceneObject], rng: np.random.Generator,
                noise: float) -> tuple[str, list[SceneObject] | None]:
    """A noisy web-like caption and the objects it describes (``None``: it describes nothing)."""
    if rng.random() >= noise:
        o = objects[int(rng.integers(len(objects)))]
        return str(rng.choice([f"{o.colour} {o.cls}", f"my {o.cls}", f"{o.cls} photo",
                               f"nice {o.colour} {o.cls}"])), [o]
    kind = rng.choice(["wrong", "unrelated", "empty"])
    if kind == "wrong":
        o = objects[int(rng.integers(len(objects)))]
        wrong = SceneObject(str(rng.choice([c for c in OBJECTS if c != o.cls])), str(rng.choice(
            [c for c in COLOURS if c != o.colour])), o.size, o.position)
        return f"{wrong.colour} {wrong.cls}", [wrong]
    if kind == "unrelated":
        return str(rng.choice(UNRELATED)), None
    return "", None


class OracleTeacher:
    """Embeddings from a fixed random projection of the attributes (class x colour x position) of what is shown or
    said, as a stand-in for DataCompDR's stored teacher embeddings."""

    def __init__(self, seed: int, dim: int = TEACHER_DIM):
        n = len(OBJECTS) * len(COLOURS) * len(POSITIONS)
        self.proj = np.random.default_rng(seed + 7919).normal(size=(n, dim)).astype(np.float32)
        pixels = 3 * TEACHER_PX ** 2
        self.pixel_proj = np.random.default_rng(seed + 104729).normal(size=(pixels, dim)).astype(np.float32)
        self.view = PaugReplay(TEACHER_PX, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

    def embed(self, objects: list[SceneObject] | None, rng: np.random.Generator, jitter: float = 0.05,
              noise: np.ndarray | None = None) -> np.ndarray:
        """``noise``: the jitter's direction (a random one when not given)."""
        noise = rng.normal(size=self.proj.shape[1]).astype(np.float32) if noise is None else noise
        if not objects:
            v = noise
        else:
            idx = [(OBJECTS.index(o.cls) * len(COLOURS) + list(COLOURS).index(o.colour)) * len(POSITIONS)
                   + POSITIONS.index(o.position) for o in objects]
            v = self.proj[idx].sum(0) + jitter * noise
        return v / np.linalg.norm(v)

    def pixel_code(self, image: Image.Image, entry: list) -> np.ndarray:
        """A code of the image augmentation ``entry`` (paug.json layout) shows, as long as a random vector."""
        pixels = self.view(image, entry, "synthetic teacher").numpy().reshape(-1)
        code = (pixels - pixels.mean()) @ self.pixel_proj
        return (code / np.linalg.norm(code) * np.sqrt(len(code))).astype(np.float32)


def random_paug(image: Image.Image, rng: np.random.Generator) -> list:
    """One DataCompDR augmentation entry: torchvision's random resized crop (scale 0.08-1, aspect 3/4-4/3) and
    RandAugment's two ops at magnitude 9 of 31, with ``rng``'s draws."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2 ** 31)))
        crop = [int(v) for v in T.RandomResizedCrop.get_params(image, (0.08, 1.0), (3 / 4, 4 / 3))]
    space = T.RandAugment()._augmentation_space(31, (TEACHER_PX, TEACHER_PX))
    ops = []
    for k in rng.integers(len(RAND_AUGMENT_OPS), size=2):
        magnitudes, signed = space[RAND_AUGMENT_OPS[k]]
        magnitude = float(magnitudes[9]) if magnitudes.ndim > 0 else 0.0
        ops.append([int(k), -magnitude if signed and rng.random() < 0.5 else magnitude])
    return [crop, ops]


def _sample(i: int, split: str, img: np.ndarray, objects: list[SceneObject], ground: str,
            rng: np.random.Generator, noise: float, teacher: OracleTeacher) -> dict:
    jpg = io.BytesIO()
    Image.fromarray(img).save(jpg, format="JPEG", quality=92)
    syn = synthetic_captions(objects, ground, rng)
    txt, said = web_caption(objects, rng, noise)
    stored = Image.open(io.BytesIO(jpg.getvalue())).convert("RGB")  # what the student will decode
    paug = [random_paug(stored, rng) for _ in range(AUGMENTATIONS)]
    emb = io.BytesIO()
    np.savez(emb, image_emb=np.stack([teacher.embed(objects, rng, noise=teacher.pixel_code(stored, p)) for p in paug]),
             text_emb=np.stack([teacher.embed(said, rng)] + [teacher.embed(objects, rng) for _ in syn]))
    key = f"{split}{i:08d}"
    return {"__key__": key, "jpg": jpg.getvalue(), "txt": txt, "syn.json": {"syn_text": syn},
            "json": {"uid": hashlib.md5(key.encode()).hexdigest(),
                     "sha256": hashlib.sha256(jpg.getvalue()).hexdigest()},
            "npz": emb.getvalue(), "paug.json": {"param_aug": paug}}


def synth_clip(out: str | Path, n_train: int = 2000, n_val: int = 200, size: int = 128, seed: int = 0,
               noise: float = 0.5, per_shard: int = 250, n_seg: int = 48, n_zero_shot: int = 4) -> Path:
    """Write ``out/train/*.tar`` and ``out/val/*.tar`` (DataCompDR layout, ``per_shard`` samples each), ``out/seg``
    (``n_seg`` training and ``n_seg // 2`` validation images of the same world, ADE20K layout) and ``out/zeroshot``
    (``zero_shot_split``)."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    teacher = OracleTeacher(seed)
    with staged_dir(out) as tmp:
        for split, n in (("train", n_train), ("val", n_val)):
            (tmp / split).mkdir()
            for start in tqdm(range(0, n, per_shard), desc=f"synth clip {split}", unit="shard", leave=False):
                with wds.TarWriter(str(tmp / split / f"{start // per_shard:05d}.tar")) as sink:
                    for i in range(start, min(n, start + per_shard)):
                        img, _, objects, ground = clip_scene(size, rng)
                        sink.write(_sample(i, split, img, objects, ground, rng, noise, teacher))
        write_ade20k(tmp / "seg", (n_seg, n_seg // 2), lambda: clip_scene(size, rng)[:2], "synth clip seg")
        zero_shot_split(tmp / "zeroshot", n_zero_shot, size, np.random.default_rng([seed, 1]))
    return out


def zero_shot_split(out: Path, per_class: int, size: int, rng: np.random.Generator) -> None:
    """``out/<colour>_<object>/*.jpg``: ``per_class`` scenes of that one object, for each of the 32 colours x objects
    (``mcq eval clip --zero-shot``; the class name is the folder's, "red house")."""
    for cls in OBJECTS:
        for colour in COLOURS:
            folder = out / f"{colour}_{cls}"
            folder.mkdir(parents=True)
            for j in range(per_class):
                Image.fromarray(clip_scene(size, rng, (cls, colour))[0]).save(folder / f"{j:04d}.jpg", quality=92)


def default_clip_data() -> Path:
    """The embedded image-text shards, written once to ``$MCQ_HOME/synth-clip``."""
    root = mcq_home() / "synth-clip"
    if not (root / "zeroshot").is_dir():
        synth_clip(root)
    return root
