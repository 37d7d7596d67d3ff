"""Image distance to the un-intervened image: MSE, PSNR, SSIM, and P3's wrapped MSE/PSNR.

``mse`` is the true mean over H×W×C of squared differences of the uint8 images on the 0–255 scale
(computed in float64). PSNR = 20·log10(255) − 10·log10(max(MSE, 1e-10)), so identical images give
148.13 dB, the value P3 reports for its 0-layer row. SSIM is `pytorch_msssim.ssim` with data_range 255
(the library P3 uses), per image.

P3's tables do not hold that MSE. P3 computes ``np.mean((a - b) ** 2)`` directly on the uint8 arrays, so
numpy's uint8 arithmetic wraps twice: the difference modulo 256 (−2 becomes 254) and its square modulo 256
(254² = 64516 becomes 4). Every pixel term therefore lies in 0..255 and the mean is far below the true
MSE of visibly different images; P3's MSE of 17–106 and PSNR of ~30–37 dB are those wrapped values. The
``mse_p3``/``psnr_p3`` columns reproduce that arithmetic exactly (the same numpy expression on the same
uint8 arrays; PSNR with the same formula on the wrapped MSE): compare them, not ``mse``/``psnr``, with
P3's tables. Use ``mse``/``psnr`` for everything else: the wrapped value is not monotone in the
difference (a difference of 16 contributes 0), so it is no distance.
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


def mse_p3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image MSE as P3 computes it: ``np.mean((a - b) ** 2)`` on the uint8 arrays, wrapping modulo 256
    in the subtraction and in the square (see the module docstring)."""
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError("P3's MSE is defined on uint8 images")
    return np.array([np.mean((x - y) ** 2) for x, y in zip(a, b)], dtype=np.float64)


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
    """MSE, PSNR and SSIM of each image against its row's reference (un-intervened) image; `mse` and
    `psnr` also write P3's wrapped `mse_p3`/`psnr_p3` (the values comparable with P3's tables)."""

    name = "image"
    metrics = ("mse", "psnr", "ssim")
    needs_reference = True
    directions: ClassVar[dict[str, int]] = {"mse": 1, "psnr": -1, "ssim": -1, "mse_p3": 1, "psnr_p3": -1}

    def score(self, batch: ScoreBatch) -> dict[str, list]:
        if batch.references is None:
            raise ValueError("image distance needs reference images")
        m = mse(batch.images, batch.references)
        m3 = mse_p3(batch.images, batch.references)
        return {"mse": m.tolist(), "psnr": psnr(m).tolist(), "mse_p3": m3.tolist(), "psnr_p3": psnr(m3).tolist(),
                "ssim": ssim(batch.images, batch.references).tolist()}
