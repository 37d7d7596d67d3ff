"""What a caption asks for, in the probes' labels: the world's vocabulary read back out of a prompt.

A prompt row says which attribute it is about (``attribute: color``) and which words carry it
(``concept: red``), but a probe column needs the label of *every* attribute the caption names — the
shape of "a red circle on a striped background" is part of what an edit of "red" must leave alone — and
of the target prompt too. Captions are written from the world's own vocabulary (`harness.toyworld.world`),
so they are read back with it: a whole-word match of each colour, shape and word, and of each background's
adjective or noun ("striped", "stripes" → ``stripes``; "checkered", "a grid" → ``grid``). Sign captions
name no background (a sign stands on a plain one), so none is asked of them.
"""

from __future__ import annotations

import functools
import re

from harness.toyworld import world


def sample_labels(sample: world.Sample) -> dict[str, str]:
    """The probe labels of a world sample (the ground truth the probes are trained on)."""
    labels = {"background": sample.background}
    for attr in ("shape", "color", "word"):
        value = getattr(sample, attr)
        if value is not None:
            labels[attr] = value
    return labels


@functools.cache
def _phrases() -> list[tuple[str, str, re.Pattern]]:
    """(attribute, label, whole-word pattern) for every phrase of the vocabulary, longest phrase first."""
    entries: list[tuple[str, str, str]] = []
    entries += [("color", c, c) for c in world.COLOR_NAMES]
    entries += [("shape", s, s) for s in world.SHAPES]
    entries += [("word", w, w) for w in world.WORDS]
    for bg in world.BACKGROUNDS:
        noun = world.BACKGROUND_NOUNS[bg].removeprefix("a ")
        entries += [("background", bg, f"{world.BACKGROUND_ADJECTIVES[bg]} background"), ("background", bg, noun)]
    entries.sort(key=lambda e: -len(e[2]))
    return [(a, label, re.compile(rf"\b{re.escape(phrase)}\b", re.IGNORECASE)) for a, label, phrase in entries]


def caption_labels(caption: str) -> dict[str, str]:
    """{attribute: label} for each attribute the caption names (the first mention wins; "a red circle on a
    striped background" → color red, shape circle, background stripes)."""
    found: dict[str, tuple[int, str]] = {}
    for attr, label, pattern in _phrases():
        match = pattern.search(caption)
        if match and (attr not in found or match.start() < found[attr][0]):
            found[attr] = (match.start(), label)
    if "word" in found:  # a sign's background is not named by its caption, even as "a white sign"
        found.pop("background", None)
    return {attr: label for attr, (_, label) in found.items()}
