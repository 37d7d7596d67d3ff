"""A quick colour check of generated samples: is the object the colour the prompt names?

The world's backgrounds are neutral grey and its colours saturated, so the object's pixels are the
saturated ones (max - min channel > SATURATED); their mean colour is assigned to the nearest of the
world's colours. A sample with almost no saturated pixels (no object drawn) counts as wrong. This is a
cheap training-time metric, not the demo's attribute probes.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.toyworld.world import BACKGROUNDS, COLOR_NAMES, COLORS, SHAPES, is_heldout, object_caption

SATURATED = 80
MIN_OBJECT_SHARE = 0.03


def classify_color(image: np.ndarray) -> str | None:
    """The world colour of the image's saturated pixels (uint8 H x W x 3), or None if there are none."""
    pixels = image.reshape(-1, 3).astype(np.float32)
    saturated = pixels[(pixels.max(1) - pixels.min(1)) > SATURATED]
    if len(saturated) < MIN_OBJECT_SHARE * len(pixels):
        return None
    mean = saturated.mean(0)
    names = list(COLORS)
    return names[int(np.argmin([np.linalg.norm(mean - np.array(COLORS[n])) for n in names]))]


def check_prompts(n_per_color: int, heldout: bool = False) -> list[tuple[str, str]]:
    """(prompt, color) pairs cycling shapes, backgrounds and phrasings over training (or held-out) combos.
    Colours in no held-out pair (red) have no held-out prompts."""
    out = []
    for color in COLOR_NAMES:
        combos = [(s, b) for s in SHAPES for b in BACKGROUNDS if is_heldout(s, color, b) == heldout]
        for k in range(n_per_color if combos else 0):
            shape, background = combos[(k * 5) % len(combos)]
            out.append((object_caption(shape, color, background, template=k), color))
    return out


@torch.no_grad()
def color_check(pipe, n_per_color: int = 8, seed: int = 0, steps: int | None = None,
                guidance_scale: float | None = None, heldout: bool = False) -> dict:
    """Per-colour share of samples whose object is the prompted colour, and the overall share."""
    from harness.toyworld.sidecar import INFERENCE

    pairs = check_prompts(n_per_color, heldout)
    images = generate(pipe, [p for p, _ in pairs], seed, steps or INFERENCE["steps"],
                      INFERENCE["guidance_scale"] if guidance_scale is None else guidance_scale)
    hits = {c: [] for c in COLOR_NAMES}
    for image, (_, color) in zip(images, pairs):
        hits[color].append(classify_color(image) == color)
    result = {f"color_{c}": round(float(np.mean(h)), 3) for c, h in hits.items() if h}
    result["color_acc"] = round(float(np.mean([x for h in hits.values() for x in h])), 3)
    return result


@torch.no_grad()
def probe_check(pipe, seed: int = 0, n_train: int = 16) -> dict:
    """The attribute probes on one sample per prompt: every held-out combination, `n_train` training ones
    and every word (first phrasing) — per split and attribute, the share read as the caption says. A
    cheaper cut of `harness.toyworld.probes.quality` for curves during training."""
    from harness.toyworld.probes import load_probes
    from harness.toyworld.probes.labels import caption_labels
    from harness.toyworld.probes.quality import quality_prompts
    from harness.toyworld.sidecar import INFERENCE

    prompts = [q for q in quality_prompts(n_train) if q.split != "words" or q.prompt.startswith("a sign")]
    images = generate(pipe, [q.prompt for q in prompts], seed, INFERENCE["steps"], INFERENCE["guidance_scale"])
    predicted = load_probes().predict(images)
    hits: dict[str, list[bool]] = {}
    for i, q in enumerate(prompts):
        for attr, label in caption_labels(q.prompt).items():
            hits.setdefault(f"probe_{q.split}_{attr}", []).append(predicted[attr][0][i] == label)
    return {k: round(float(np.mean(v)), 3) for k, v in sorted(hits.items())}


def generate(pipe, prompts: list[str], seed: int, steps: int, guidance_scale: float, size: int = 32) -> np.ndarray:
    """uint8 N x size x size x 3 images, row i from a CPU generator seeded seed + i. (PixArt's pipeline
    would bin a 32-px request to a 256-px aspect bucket, or refuse an 8x8-latent transformer: turned off;
    and its caption cleaning needs bs4, without which it lower-cases as it does anyway.)"""
    import inspect

    generators = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    pixart = "use_resolution_binning" in inspect.signature(pipe.__call__).parameters
    extra = {"use_resolution_binning": False, "clean_caption": False} if pixart else {}
    out = pipe(prompts, num_inference_steps=steps, guidance_scale=guidance_scale, height=size, width=size,
               generator=generators, output_type="np", **extra)
    return (np.asarray(out.images) * 255).round().clip(0, 255).astype(np.uint8)
