"""Background preservation: MSE, PSNR and SSIM with the text regions of both images blacked out.

A text edit should change the rendered text and nothing else. P3 measures "everything else" with its
``no_text`` variants: detect text polygons in the edited image and in the original, fill them black in
both, and recompute MSE/PSNR/SSIM (defined in `harness.metrics.image`) on what is left.

**Deviation from P3.** P3 detects text with OpenCV's ``TextDetectionModel_DB`` (DBNet, ResNet-50,
IC15 weights, input 1280×736). Those weights are not shipped by any package we can install, so we use
EasyOCR's CRAFT detector, which the OCR scorer already loads: the boxes are the fragments EasyOCR
reads (``readtext`` boxes, with EasyOCR's default 10 % margin), cached and shared with the OCR scorer.
Both detectors find word-level regions on rendered signs, but the masks differ in shape and margin,
so absolute values are comparable with P3's only approximately; rankings should agree.

The mask is the union of both images' boxes, so a region that holds text in either image is ignored in
both. Directions are those of the unmasked metrics: MSE +1, PSNR −1, SSIM −1.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw

from harness.metrics import ScoreBatch, register
from harness.metrics.image import mse, psnr, ssim
from harness.metrics.ocr import OcrBacked, read


def text_mask(shape: tuple[int, int], boxes) -> np.ndarray:
    """Boolean (H, W) mask, True inside any of the polygons (sequences of (x, y) corners)."""
    height, width = shape
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for box in boxes:
        draw.polygon([(float(x), float(y)) for x, y in box], fill=1)
    return np.asarray(canvas, dtype=bool)


def blacken(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Copies of uint8 (N, H, W, 3) `images` with the pixels under (N, H, W) `masks` set to 0."""
    out = images.copy()
    out[masks] = 0
    return out


@register("image_notext")
class TextMaskedImageDistance(OcrBacked):
    """MSE/PSNR/SSIM against the reference image, outside the text found in either image.

    Options: those of the OCR reader (``weights_dir``, ``device``).
    """

    name = "image_notext"
    metrics = ("image_notext",)
    needs_reference = True
    directions: ClassVar[dict[str, int]] = {"mse_notext": 1, "psnr_notext": -1, "ssim_notext": -1}

    def score(self, batch: ScoreBatch) -> dict[str, list]:
        if batch.references is None:
            raise ValueError("image_notext needs reference images")
        masks = np.stack([self._mask(image, reference) for image, reference in zip(batch.images, batch.references)])
        images, references = blacken(batch.images, masks), blacken(batch.references, masks)
        m = mse(images, references)
        return {"mse_notext": m.tolist(), "psnr_notext": psnr(m).tolist(), "ssim_notext": ssim(images, references).tolist()}

    def _mask(self, image: np.ndarray, reference: np.ndarray) -> np.ndarray:
        boxes = read(self.reader, image).boxes + read(self.reader, reference).boxes
        return text_mask(image.shape[:2], boxes)
