"""Training images and captions for a fine-tune, and the hash the adapter's manifest records.

Two sources:

* an **image folder** in the layout diffusers' `imagefolder` loader and its training examples read: image
  files plus ``metadata.jsonl``, one JSON object per line with ``file_name`` and ``text`` (the caption).
  Every image must have a caption and every caption an image; nothing is guessed.
* the **toyworld generator**: signs of any words the renderer's font can draw — also words the toyworld
  model never saw — in the world's sign phrasings, optionally mixed with object scenes of the world's
  training split, deterministic from a seed.

Images are resized (shorter side to `resolution`, bicubic) and centre-cropped as P3's runs did (512²
centre crop), then scaled to [-1, 1]; SDXL's micro-conditioning needs each image's original size and crop
corner, which `batch` returns too. The data hash covers every caption and every image's bytes, so two
adapters trained on different data never share one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from harness.finetune.spec import DataSpec, FinetuneError, ToyworldData

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
METADATA = "metadata.jsonl"


@dataclass
class Batch:
    pixels: torch.Tensor  # N x 3 x R x R in [-1, 1]
    captions: list[str]
    original_sizes: list[tuple[int, int]]  # (height, width) before resizing (SDXL's micro-conditioning)
    crops: list[tuple[int, int]]  # (top, left) of the crop, in resized pixels


@dataclass
class TrainingSet:
    """Captioned images, loaded per batch (`batch(indices)`)."""

    kind: str  # "folder" | "toyworld"
    captions: list[str]
    resolution: int
    center_crop: bool = True
    files: list[Path] = field(default_factory=list)  # folder: one image file per caption
    arrays: np.ndarray | None = None  # toyworld: uint8 N x H x W x 3, already at `resolution`
    digest: str = ""

    def __len__(self) -> int:
        return len(self.captions)

    def batch(self, indices: list[int]) -> Batch:
        if self.arrays is not None:
            images = [self.arrays[i] for i in indices]
            sizes = [(a.shape[0], a.shape[1]) for a in images]
            crops = [(0, 0)] * len(images)
        else:
            images, sizes, crops = [], [], []
            for i in indices:
                image, size, crop = load_image(self.files[i], self.resolution, self.center_crop)
                images.append(image)
                sizes.append(size)
                crops.append(crop)
        pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return Batch(pixels, [self.captions[i] for i in indices], sizes, crops)


def load_image(path: Path, resolution: int, center_crop: bool) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """uint8 R x R x 3, the original (height, width), the crop's (top, left)."""
    from PIL import Image

    with Image.open(path) as handle:
        image = handle.convert("RGB")
    original = (image.height, image.width)
    scale = resolution / min(image.size)
    if image.size != (resolution, resolution):
        image = image.resize((max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale))),
                             Image.Resampling.BICUBIC)
    top = (image.height - resolution) // 2 if center_crop else 0
    left = (image.width - resolution) // 2 if center_crop else 0
    image = image.crop((left, top, left + resolution, top + resolution))
    return np.asarray(image, dtype=np.uint8), original, (top, left)


def load_data(spec: DataSpec, resolution: int, center_crop: bool = True) -> TrainingSet:
    """The training set `spec` names, checked (one-line errors) and hashed."""
    if spec.toyworld is not None:
        return toyworld_set(spec.toyworld, resolution)
    return folder_set(Path(spec.folder), resolution, center_crop)


def folder_set(folder: Path, resolution: int, center_crop: bool = True) -> TrainingSet:
    if not folder.is_dir():
        raise FinetuneError(f"data: folder '{folder}' does not exist")
    images = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    metadata = folder / METADATA
    if not metadata.is_file():
        what = f"{len(images)} images but no {METADATA}" if images else "no images and no metadata"
        raise FinetuneError(f"data: folder '{folder}' has {what} (expected image files and {METADATA} lines "
                            "with file_name and text)")
    files, captions = [], []
    digest = hashlib.sha256()
    for n, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FinetuneError(f"data: {metadata}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not row.get("file_name"):
            raise FinetuneError(f"data: {metadata}:{n}: no file_name")
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise FinetuneError(f"data: {metadata}:{n}: '{row['file_name']}' has no caption (a non-empty 'text')")
        path = folder / row["file_name"]
        if not path.is_file():
            raise FinetuneError(f"data: {metadata}:{n}: image '{row['file_name']}' does not exist")
        files.append(path)
        captions.append(text)
        digest.update(json.dumps([row["file_name"], text]).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    if not files:
        raise FinetuneError(f"data: {metadata} lists no images")
    listed = {f.name for f in files}
    uncaptioned = [name for name in images if name not in listed]
    if uncaptioned:
        raise FinetuneError(f"data: '{folder / uncaptioned[0]}' has no caption in {METADATA} "
                            f"({len(uncaptioned)} images without one)")
    return TrainingSet("folder", captions, resolution, center_crop, files=files, digest=digest.hexdigest()[:16])


def toyworld_samples(words: list[str], n: int, seed: int, objects: float = 0.0):
    """`n` toyworld samples: signs of `words` (phrasings of `world.WORD_TEMPLATES`, uniform over words),
    and a share `objects` of object scenes of the world's training split; deterministic from `seed`."""
    from harness.toyworld import world

    rng = np.random.default_rng([seed, 17])
    scenes = iter(s for s in world.sample_world(n * 4 + 16, seed) if s.kind == "object")
    samples = []
    for _ in range(n):
        if rng.random() < objects:
            samples.append(next(scenes))
            continue
        word = words[int(rng.integers(len(words)))]
        caption = world.WORD_TEMPLATES[int(rng.integers(len(world.WORD_TEMPLATES)))].format(word=word)
        samples.append(world.Sample(None, None, "plain", word, caption, int(rng.integers(0, 2**31 - 1))))
    return samples


def toyworld_set(spec: ToyworldData, resolution: int) -> TrainingSet:
    from harness.toyworld.world import render

    samples = toyworld_samples(spec.words, spec.n, spec.seed, spec.objects)
    arrays = np.stack([render(s, resolution) for s in samples])
    captions = [s.caption for s in samples]
    digest = hashlib.sha256(json.dumps(captions).encode())
    digest.update(arrays.tobytes())
    return TrainingSet("toyworld", captions, resolution, arrays=arrays, digest=digest.hexdigest()[:16])
