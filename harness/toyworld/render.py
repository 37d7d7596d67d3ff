"""Drawing the toyworld's samples with PIL, identically on every machine.

Shapes and patterns are drawn at 4x the requested size and box-filtered down (cheap anti-aliasing);
letters come from a built-in 5x7 bitmap font, not a system font, so a word renders the same pixels
everywhere and stays legible at 32 px (a three-letter word spans ~70% of the image width). Jitter —
the object's centre and size, the pattern's phase, the sign's position — is drawn from the sample's
seed as fractions of the image, so a sample keeps its layout at every size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from harness.toyworld.world import BACKGROUND_RGB, COLORS, INK_RGB, PATTERN_RGB, SIGN_RGB, Sample

SUPERSAMPLE = 4

# 5x7 glyphs for the letters the world's words use ('#' = ink).
FONT: dict[str, tuple[str, ...]] = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".####", "#....", "#....", "#....", "#....", "#....", ".####"),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "G": (".####", "#....", "#....", "#.###", "#...#", "#...#", ".###."),
    "N": ("#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
}
GLYPH_W, GLYPH_H, GLYPH_GAP = 5, 7, 1


def render_sample(sample: Sample, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 HxWx3, mask bool HxW): the mask marks pixels wholly inside the object or the ink."""
    if size < 8:
        raise ValueError(f"render: size must be >= 8 pixels, got {size}")
    rng = np.random.default_rng(sample.seed)
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUND_RGB)
    mask = Image.new("L", (big, big), 0)
    _draw_background(ImageDraw.Draw(image), sample.background, big, rng)
    if sample.word is not None:
        _draw_sign(ImageDraw.Draw(image), ImageDraw.Draw(mask), sample.word, big, rng)
    else:
        _draw_shape(ImageDraw.Draw(image), ImageDraw.Draw(mask), sample.shape, COLORS[sample.color], big, rng)
    small = np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)
    inside = np.asarray(mask.resize((size, size), Image.Resampling.BOX)) >= 250
    return small.copy(), inside


def _draw_background(draw: ImageDraw.ImageDraw, style: str, big: int, rng: np.random.Generator) -> None:
    period = big / 4  # four repeats across the image: 8 px at 32 px
    phase = float(rng.uniform(0, period))
    line = max(1, round(big / 32))
    if style == "stripes":
        for k in range(-1, 6):
            y = k * period + phase
            draw.rectangle([0, y, big, y + period / 2 - 1], fill=PATTERN_RGB)
    elif style == "grid":
        for k in range(-1, 6):
            p = k * period + phase
            draw.rectangle([p, 0, p + line - 1, big], fill=PATTERN_RGB)
            draw.rectangle([0, p, big, p + line - 1], fill=PATTERN_RGB)
    elif style == "dots":
        r = period * 0.2
        for i in range(-1, 6):
            for j in range(-1, 6):
                cx, cy = i * period + phase, j * period + phase
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=PATTERN_RGB)


def _draw_shape(draw, mask_draw, shape: str, rgb, big: int, rng: np.random.Generator) -> None:
    half = big * float(rng.uniform(0.24, 0.32))  # half the object's extent: ~half the image wide
    cx = big * 0.5 + big * float(rng.uniform(-0.08, 0.08))
    cy = big * 0.5 + big * float(rng.uniform(-0.08, 0.08))
    for d, fill in ((draw, rgb), (mask_draw, 255)):
        if shape == "circle":
            d.ellipse([cx - half, cy - half, cx + half, cy + half], fill=fill)
        elif shape == "square":
            s = half * 0.88
            d.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
        elif shape == "triangle":
            d.polygon([(cx, cy - half), (cx + half, cy + half * 0.8), (cx - half, cy + half * 0.8)], fill=fill)
        elif shape == "cross":
            w = half * 0.36
            d.rectangle([cx - w, cy - half, cx + w, cy + half], fill=fill)
            d.rectangle([cx - half, cy - w, cx + half, cy + w], fill=fill)
        else:
            raise ValueError(f"render: unknown shape '{shape}'")


def _draw_sign(draw, mask_draw, word: str, big: int, rng: np.random.Generator) -> None:
    units_w = len(word) * GLYPH_W + (len(word) - 1) * GLYPH_GAP
    cell = big * 0.72 / units_w * float(rng.uniform(0.92, 1.0))  # one font pixel, in supersampled pixels
    text_w, text_h = units_w * cell, GLYPH_H * cell
    x0 = (big - text_w) / 2 + big * float(rng.uniform(-0.04, 0.04))
    y0 = (big - text_h) / 2 + big * float(rng.uniform(-0.06, 0.06))
    pad = cell * 1.2
    draw.rectangle([x0 - pad, y0 - pad, x0 + text_w + pad, y0 + text_h + pad], fill=SIGN_RGB)
    for k, letter in enumerate(word):
        left = x0 + k * (GLYPH_W + GLYPH_GAP) * cell
        for row, bits in enumerate(FONT[letter]):
            for col, bit in enumerate(bits):
                if bit == "#":
                    box = [left + col * cell, y0 + row * cell, left + (col + 1) * cell - 1, y0 + (row + 1) * cell - 1]
                    draw.rectangle(box, fill=INK_RGB)
                    mask_draw.rectangle(box, fill=255)
