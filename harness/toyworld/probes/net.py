"""The probe network: one small CNN trunk with a classification head per attribute.

Why one trunk and several heads: the four attributes are read off the same 2-D picture (a coloured shape
on a patterned background, or a rendered word), so the early filters — colour opponency, edges, stripes
— are shared, and one network of ~0.1M parameters (a few hundred KB of float32) reads all four in one
pass. Each head is still a separate classifier with its own softmax, so "the colour probe" is a
well-defined function of the image.

The trunk ends in an adaptive 4×4 average pool, so the head sees a coarse spatial layout (shape and word
glyphs depend on it) and the same weights accept any input size; `ProbeNet.prepare` still resizes
images to the size the probes were trained at, which is the size the model generates.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

POOL = 4


class ProbeNet(nn.Module):
    """Conv trunk (3→32→64→64→64, three stride-2 stages, BatchNorm, ReLU) → 4×4 pool → one linear head per
    attribute. `forward` returns ``{attribute: logits (N, n_labels)}``."""

    def __init__(self, heads: dict[str, int], width: int = 32, size: int = 32):
        super().__init__()
        self.size = size
        w = width

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True))

        self.trunk = nn.Sequential(block(3, w, 1), block(w, 2 * w, 2), block(2 * w, 2 * w, 2), block(2 * w, 2 * w, 2),
                                   nn.AdaptiveAvgPool2d(POOL), nn.Flatten(), nn.Dropout(0.1))
        self.heads = nn.ModuleDict({name: nn.Linear(2 * w * POOL * POOL, n) for name, n in heads.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.trunk(x)
        return {name: head(features) for name, head in self.heads.items()}

    def prepare(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, 3) → float (N, 3, size, size) in [-1, 1], resized (bilinear, antialiased) when the
        images are not at the training size."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return x
