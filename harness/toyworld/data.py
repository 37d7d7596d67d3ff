"""The training set, pre-rendered in memory: a few thousand 32x32 images cost ~10 MB and a few seconds,
and rendering once keeps the training loop's time for the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.toyworld.world import Sample, render, sample_world


@dataclass
class RenderedSet:
    """Samples, their images (uint8 N x H x W x 3) and captions, index-aligned."""

    samples: list[Sample]
    images: np.ndarray

    @property
    def captions(self) -> list[str]:
        return [s.caption for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def tensors(self, index) -> torch.Tensor:
        """Images `index` as float N x 3 x H x W in [-1, 1] (the VAE's input range)."""
        return to_model_range(self.images[index])


def rendered_set(n: int, seed: int, size: int, split: str = "train") -> RenderedSet:
    samples = sample_world(n, seed, split)
    images = np.stack([render(s, size) for s in samples]) if samples else np.zeros((0, size, size, 3), np.uint8)
    return RenderedSet(samples, images)


def to_model_range(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """N x 3 x H x W in [-1, 1] → uint8 N x H x W x 3."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
