"""Probe data: world renders with their labels, and the damage that makes them look like samples.

Training images come from the world's *training* split only (`world.sample_world(split="train")`), so
the held-out combinations (a green triangle, a blue shape on dots, ...) are new to the probes exactly as
they are new to the model; the evaluation set is the held-out split for shape, colour and background,
and signs from fresh seeds for the word (words have no held-out combination: a new seed is a new
layout).

`degrade` is the augmentation. A diffusion model's samples differ from renders in predictable ways:
softer edges, a little high-frequency noise, colours and contrast a few levels off, the object a pixel
or two away. Each training image gets a random dose of each (blur σ ≤ 1 px, Gaussian noise ≤ 10 levels,
contrast ×0.85–1.15, brightness and per-channel shifts of a few levels, a shift of ≤ 2 px), so the
probes read samples as they read renders instead of keying on render-perfect pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from harness.toyworld import world
from harness.toyworld.probes.labels import sample_labels

ATTRIBUTES = ("shape", "color", "background", "word")


def vocabulary(extra_words: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Each probe head's labels, in output order (the world's own lists; `extra_words`: words the world
    never shows, appended to the word head, for probes that read a fine-tune's new words)."""
    return {"shape": list(world.SHAPES), "color": list(world.COLOR_NAMES), "background": list(world.BACKGROUNDS),
            "word": [*world.WORDS, *extra_words]}


def with_words(samples: list[world.Sample], words: list[str]) -> list[world.Sample]:
    """`samples` with every sign's word redrawn uniformly from `words` (from the sign's own seed), captioned
    in the same phrasing: the training split's layouts over a larger word list."""
    out = []
    for s in samples:
        if s.kind == "word":
            word = words[np.random.default_rng([s.seed, 5]).integers(len(words))]
            template = next(t for t in world.WORD_TEMPLATES if t.format(word=s.word) == s.caption)
            s = world.Sample(None, None, s.background, word, template.format(word=word), s.seed)
        out.append(s)
    return out


def encode(samples: list[world.Sample], size: int, extra_words: tuple[str, ...] = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """uint8 images (N, size, size, 3) and per attribute an int64 label index (−1: the sample has none)."""
    vocab = vocabulary(extra_words)
    images = np.stack([world.render(s, size) for s in samples]) if samples else np.zeros((0, size, size, 3), np.uint8)
    targets = {a: np.full(len(samples), -1, dtype=np.int64) for a in ATTRIBUTES}
    for i, sample in enumerate(samples):
        for attr, label in sample_labels(sample).items():
            targets[attr][i] = vocab[attr].index(label)
    return images, targets


def training_set(n: int, size: int, seed: int, extra_words: tuple[str, ...] = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    samples = world.sample_world(n, seed, "train")
    if extra_words:
        samples = with_words(samples, [*world.WORDS, *extra_words])
    return encode(samples, size, extra_words)


def evaluation_sets(n: int, size: int, seed: int,
                    extra_words: tuple[str, ...] = ()) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """{"heldout": held-out object scenes, "signs": signs of fresh seeds} — disjoint from training seeds."""
    words = [*world.WORDS, *extra_words]
    signs = [world.Sample(None, None, "plain", words[i % len(words)],
                          world.WORD_TEMPLATES[i % len(world.WORD_TEMPLATES)].format(word=words[i % len(words)]),
                          seed * 100_003 + i)
             for i in range(max(len(words), n // 4))]
    return {"heldout": encode(world.sample_world(n, seed, "heldout"), size, extra_words),
            "signs": encode(signs, size, extra_words)}


def permute_colors(x: torch.Tensor, color: torch.Tensor, generator: torch.Generator,
                   share: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Swap the RGB channels of a random `share` of the batch (one of the five non-identity orders) and
    drop their colour label (−1). The greys, the sign and its ink stay what they are, while a red circle
    becomes a green- or blue-ish one: the shape, background and word heads see every shape in every hue,
    so a held-out pairing (a green triangle) is no new sight to them, though the training split has none."""
    orders = torch.tensor([[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
    n = x.shape[0]
    chosen = torch.rand(n, generator=generator) < share
    pick = orders[torch.randint(0, len(orders), (n,), generator=generator)]
    index = torch.where(chosen[:, None], pick, torch.arange(3).expand(n, 3))
    x = torch.gather(x, 1, index[:, :, None, None].expand_as(x))
    return x, torch.where(chosen, torch.full_like(color, -1), color)


def degrade(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random sample-like damage to a float batch in [-1, 1] (N, 3, H, W); see the module docstring."""
    n = x.shape[0]

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=generator)

    # shift by up to 2 px (edge pixels repeated)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=generator))
    x = torch.roll(F.pad(x, (2, 2, 2, 2), mode="replicate"), shifts=(dy, dx), dims=(2, 3))[..., 2:-2, 2:-2]
    # blur with a per-image σ in [0, 1] px: a mix of the image and its 3×3 Gaussian blur
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    mix = uniform(0.0, 1.0, 1, 1, 1)
    x = (1 - mix) * x + mix * blurred
    # contrast, brightness, per-channel offsets, noise (levels of 255 → units of 2/255)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * uniform(0.85, 1.15, 1, 1, 1) + mean
    x = x + uniform(-12, 12, 1, 1, 1) * (2 / 255) + uniform(-8, 8, 3, 1, 1) * (2 / 255)
    x = x + torch.randn(x.shape, generator=generator) * uniform(0, 10, 1, 1, 1) * (2 / 255)
    return x.clamp(-1, 1)
