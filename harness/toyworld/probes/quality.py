"""How well the model draws its world: probe accuracy on generated images, per attribute and split.

The issue's quality bar (≥80% per attribute on generated images, held-out combinations included) is
measured here: one prompt per combination of the split (object scenes: every (shape, colour,
background) of the training split or of the held-out split, in rotating phrasings; signs: every word in
every phrasing), `seeds` samples each at the model's own sampler defaults, and each probe asked whether
the image shows what the caption names. Rows, not a summary, are returned: intervals are computed over
prompts by the caller (`analysis.toyworld_card`), since the seeds of one prompt are not independent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.toyworld import world
from harness.toyworld.probes import Probes, load_probes
from harness.toyworld.probes.labels import caption_labels


@dataclass(frozen=True)
class QualityPrompt:
    prompt: str
    split: str  # train | heldout | words
    labels: tuple[tuple[str, str], ...] | None = None  # (attribute, label) pairs; None: read from the caption


# The quality bar: each (split, attribute) read as captioned in at least BAR of generated images.
BAR = 0.8
BAR_CASES: tuple[tuple[str, str], ...] = (("train", "color"), ("train", "shape"), ("train", "background"),
                                          ("heldout", "color"), ("heldout", "shape"), ("heldout", "background"),
                                          ("words", "word"))


def quality_prompts(max_train: int | None = None) -> list[QualityPrompt]:
    """Every held-out combination, the training combinations (every k-th, to `max_train`), every word."""
    train = world.object_combos("train")
    if max_train and len(train) > max_train:
        train = train[:: -(-len(train) // max_train)]
    rows = [QualityPrompt(world.object_caption(*c, template=i), "train") for i, c in enumerate(train)]
    rows += [QualityPrompt(world.object_caption(*c, template=i), "heldout") for i, c in enumerate(world.object_combos("heldout"))]
    rows += [QualityPrompt(world.word_caption(w, t), "words") for w in world.WORDS for t in range(len(world.WORD_TEMPLATES))]
    return rows


def generated_accuracy(adapter, prompts: list[QualityPrompt], seeds: list[int], probes: Probes | None = None,
                       batch: int = 16) -> list[dict]:
    """One row per (prompt, seed, attribute the caption names): {prompt, split, seed, attribute, label,
    predicted, ok, p}."""
    probes = probes or load_probes()
    d = adapter.defaults
    rows = []
    for start in range(0, len(prompts), max(1, batch // len(seeds))):
        chunk = prompts[start:start + max(1, batch // len(seeds))]
        texts = [q.prompt for q in chunk for _ in seeds]
        seed_list = [s for _ in chunk for s in seeds]
        cond = adapter.encode(texts)
        negative = adapter.encode_negative(len(texts)) if adapter.cfg_batch(d.guidance_scale) else None
        images = adapter.generate(cond, negative, seed_list, d.steps, d.guidance_scale, d.height, d.width)
        predicted = probes.predict(np.asarray(images))
        for i, text in enumerate(texts):
            q = chunk[i // len(seeds)]
            for attr, label in (dict(q.labels) if q.labels is not None else caption_labels(text)).items():
                labels, probs = predicted[attr]
                rows.append({"prompt": text, "split": q.split, "seed": seed_list[i], "attribute": attr, "label": label,
                             "predicted": labels[i], "ok": float(labels[i] == label),
                             "p": probes.probability(attr, probs[i], label)})
    return rows
