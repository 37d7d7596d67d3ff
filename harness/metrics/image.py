"""Image distance to the un-intervened image: MSE, PSNR, SSIM — defined as P3 computes them.

MSE is the mean over H×W×C of squared uint8 differences (0–255 scale). PSNR = 20·log10(255) −
10·log10(max(MSE, 1e-10)), so identical images give 148.13 dB, the value P3 reports for its 0-layer row.
SSIM is `pytorch_msssim.ssim` with data_range 255 (the library P3 uses), per image.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from harness.metrics import ScoreBatch, Scorer, register

MSE_FLOOR = 1e-10


def mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image mean squared difference of uint8 images (N, H, W, C) on the 0–255 scale."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    return (diff**2).reshape(len(a), -1).mean(axis=1)


def psnr(mse_values: np.ndarray) -> np.ndarray:
    return 20 * math.log10(255.0) - 10 * np.log10(np.maximum(mse_values, MSE_FLOOR))


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image SSIM (pytorch_msssim, Gaussian window 11, data_range 255); the window shrinks to the
    image for images smaller than 11 px (tiny test models), which the library otherwise rejects."""
    from pytorch_msssim import ssim as _ssim

    x = torch.from_numpy(a).permute(0, 3, 1, 2).double()
    y = torch.from_numpy(b).permute(0, 3, 1, 2).double()
    win = min(11, *a.shape[1:3])
    win -= 1 - win % 2  # odd window
    return _ssim(x, y, data_range=255, size_average=False, win_size=win).numpy()


@register("mse", "psnr", "ssim")
class ImageDistance(Scorer):
    """MSE, PSNR and SSIM of each image against its row's reference (un-intervened) image."""

    name = "image"
    metrics = ("mse", "psnr", "ssim")
    needs_reference = True
    directions: ClassVar[dict[str, int]] = {"mse": 1, "psnr": -1, "ssim": -1}

    def score(self, batch: ScoreBatch) -> dict[str, list]:
        if batch.references is None:
            raise ValueError("image distance needs reference images")
        m = mse(batch.images, batch.references)
        return {"mse": m.tolist(), "psnr": psnr(m).tolist(), "ssim": ssim(batch.images, batch.references).tolist()}
