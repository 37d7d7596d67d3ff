"""The semantic side of an edit's evaluation: did the concept's prompts move away from the concept and
toward the target in CLIP space (efficacy), while other prompts stayed where they were (specificity)?

For each prompt the original model's image ``o`` and the edited model's image ``e`` (same seed) are
embedded with CLIP, with the prompt's text ``p`` (it carries the concept) and, for the edit's own prompts,
its target text ``t`` (the same prompt with the concept replaced by the target):

    clip_concept_shift = cos(e, p) − cos(o, p)     < 0: the image moved away from the concept
    clip_target_shift  = cos(e, t) − cos(o, t)     > 0: the image moved toward the target
    clip_edit_direction = clip_target_shift − clip_concept_shift   > 0: the edit did what it says
    clip_image_cos     = cos(e, o)                  1: the same picture (what specificity rows should keep)

Differences of cosines of the *same* image pair cancel what CLIP thinks of the prompt on its own, so the
sign is meaningful on a single seed (the CLIP-T values alone are not: P1/P2 report their change). The
encoder is `harness.metrics.clip.ClipScorer` (any object with its `encode_images`/`encode_texts`), so
weights follow the sweep's CLIP rules: offline, a file or a cached open_clip tag, random only when asked.
"""

from __future__ import annotations

import numpy as np

COLUMNS = ("clip_concept_shift", "clip_target_shift", "clip_edit_direction", "clip_image_cos")


def semantic_shift(encoder, originals: np.ndarray, edits: np.ndarray, prompt: str,
                   target: str | None) -> dict[str, list[float | None]]:
    """The four columns for one prompt's images (N, H, W, 3) from the original and the edited model;
    the target's columns are None for prompts without a target (specificity)."""
    feats = encoder.encode_images(list(originals) + list(edits))
    o, e = feats[: len(originals)], feats[len(originals):]
    texts = encoder.encode_texts([prompt] + ([target] if target else []))
    concept = e @ texts[0] - o @ texts[0]
    shift = (e @ texts[1] - o @ texts[1]) if target else None
    n = len(originals)
    return {"clip_concept_shift": [float(v) for v in concept],
            "clip_target_shift": [float(v) for v in shift] if shift is not None else [None] * n,
            "clip_edit_direction": [float(a - b) for a, b in zip(shift, concept)] if shift is not None else [None] * n,
            "clip_image_cos": [float(v) for v in np.sum(e * o, axis=1)]}


def clip_encoder(options: dict):
    """The CLIP scorer that embeds the images and texts (`options`: the `scorers.clip` keys of a job)."""
    from harness.metrics.clip import ClipScorer

    return ClipScorer(**options)
