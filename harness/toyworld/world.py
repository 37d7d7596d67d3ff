"""The toyworld: a procedural world of captioned images whose facts we control.

A sample is either an *object scene* — one coloured shape on a patterned, neutral-grey background
("a red circle on a striped background") — or a *sign* — a short uppercase word in black on a white
sign over a plain background ("a sign that says CAT"). Every attribute is drawn from a small vocabulary
(the constants below, importable so prompt files and probes are written from the same lists), and
every sample is deterministic from its seed: `sample_world(n, seed)` gives the same list on every
machine, and `render(sample, size)` draws the same pixels (jitter of position and size comes from the
sample's own seed, as fractions of the image, so a sample keeps its layout at every resolution).

Generalisation is testable because some combinations never appear in training: the (shape, color)
pairs in `HELDOUT_SHAPE_COLOR` and the (color, background) pairs in `HELDOUT_COLOR_BACKGROUND`.
`split="train"` draws only from the other combinations; `split="heldout"` draws only object scenes
with at least one held-out pair. Words have no held-out combinations (a sign has no shape or colour).

Example::

    from harness.toyworld.world import sample_world, render
    samples = sample_world(8, seed=0)
    image = render(samples[0], 32)          # uint8 array, 32 x 32 x 3
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

# --- the vocabulary ------------------------------------------------------------------------------------

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

# Saturated primaries and a secondary, far apart in RGB and in hue from each other and from the grey
# backgrounds, so the mean colour of the object's pixels names its colour unambiguously.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 25, 25),
    "green": (25, 175, 40),
    "blue": (30, 60, 230),
    "yellow": (240, 215, 20),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)

BACKGROUNDS: tuple[str, ...] = ("plain", "stripes", "dots", "grid")
# How a caption names each background: as an adjective ("a striped background") and as a noun phrase
# ("stripes"). Both forms carry the background's concept word for causal tracing and editing.
BACKGROUND_ADJECTIVES: dict[str, str] = {"plain": "plain", "stripes": "striped", "dots": "dotted",
                                         "grid": "checkered"}
BACKGROUND_NOUNS: dict[str, str] = {"plain": "a plain background", "stripes": "stripes", "dots": "dots",
                                    "grid": "a grid"}
# Neutral greys: the background never competes with the object's colour.
BACKGROUND_RGB: tuple[int, int, int] = (170, 170, 170)
PATTERN_RGB: tuple[int, int, int] = (105, 105, 105)
SIGN_RGB: tuple[int, int, int] = (245, 245, 245)
INK_RGB: tuple[int, int, int] = (0, 0, 0)

WORDS: tuple[str, ...] = ("CAT", "DOG", "SUN", "BOX")

# Caption phrasings. Object templates take {color}, {shape}, {bg_adj}, {bg_noun}; word templates {word}.
OBJECT_TEMPLATES: tuple[str, ...] = (
    "a {color} {shape} on a {bg_adj} background",
    "a {color} {shape}, {bg_noun}",
    "a {bg_adj} background with a {color} {shape}",
    "{bg_noun} behind a {color} {shape}",
)
WORD_TEMPLATES: tuple[str, ...] = (
    "a sign that says {word}",
    "the word {word}",
    "a white sign with the word {word}",
)

# Partial captions: each names only some of an object scene's attributes. Training may swap a share of
# captions for these (`TrainConfig.partial_captions`) so that each word must carry its own attribute
# rather than the whole phrase naming a memorised combination: the model then composes held-out pairs
# from their words. The first three omit one attribute, the last three keep one.
PARTIAL_TEMPLATES: tuple[str, ...] = (
    "a {color} {shape}",
    "a {shape} on a {bg_adj} background",
    "a {color} shape on a {bg_adj} background",
    "a {shape}",
    "something {color}",
    "a {bg_adj} background",
)

# Held out of training: each shape and each colour and background still appears in training, only
# these pairings do not.
HELDOUT_SHAPE_COLOR: frozenset[tuple[str, str]] = frozenset({("triangle", "green"), ("cross", "yellow")})
HELDOUT_COLOR_BACKGROUND: frozenset[tuple[str, str]] = frozenset({("blue", "dots"), ("yellow", "stripes")})

WORD_FRACTION = 0.2  # share of signs in the training split: four words need fewer examples than 256 scenes
SPLITS = ("train", "heldout")


# --- samples ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """One captioned image of the world. Object scenes have `shape` and `color` and `word=None`; signs
    have `word` and `shape=color=None` (and a plain background). `seed` fixes the render's jitter."""

    shape: str | None
    color: str | None
    background: str
    word: str | None
    caption: str
    seed: int

    @property
    def kind(self) -> str:
        return "word" if self.word is not None else "object"

    @property
    def heldout(self) -> bool:
        """True when the sample shows a combination that training never sees."""
        return is_heldout(self.shape, self.color, self.background)


def is_heldout(shape: str | None, color: str | None, background: str) -> bool:
    return (shape, color) in HELDOUT_SHAPE_COLOR or (color, background) in HELDOUT_COLOR_BACKGROUND


def object_caption(shape: str, color: str, background: str, template: int = 0) -> str:
    """The caption of an object scene in phrasing `template` (an index into OBJECT_TEMPLATES)."""
    _check(shape, SHAPES, "shape")
    _check(color, COLOR_NAMES, "color")
    _check(background, BACKGROUNDS, "background")
    return _fill(OBJECT_TEMPLATES[template % len(OBJECT_TEMPLATES)], shape, color, background)


def partial_captions(sample: Sample) -> tuple[str, ...]:
    """The sample's partial captions (PARTIAL_TEMPLATES), each true of its image; a sign's is its caption."""
    if sample.kind == "word":
        return (sample.caption,)
    return tuple(_fill(t, sample.shape, sample.color, sample.background) for t in PARTIAL_TEMPLATES)


def _fill(template: str, shape: str, color: str, background: str) -> str:
    """An object template with the scene's words: {color}, {shape}, {bg_adj} and {bg_noun}."""
    return template.format(color=color, shape=shape, bg_adj=BACKGROUND_ADJECTIVES[background],
                           bg_noun=BACKGROUND_NOUNS[background])


def word_caption(word: str, template: int = 0) -> str:
    """The caption of a sign in phrasing `template` (an index into WORD_TEMPLATES)."""
    _check(word, WORDS, "word")
    return WORD_TEMPLATES[template % len(WORD_TEMPLATES)].format(word=word)


def object_sample(shape: str, color: str, background: str, template: int = 0, seed: int = 0) -> Sample:
    """An object scene built from named attributes (for prompt files and probes)."""
    return Sample(shape, color, background, None, object_caption(shape, color, background, template), seed)


def word_sample(word: str, template: int = 0, seed: int = 0) -> Sample:
    """A sign built from a named word."""
    return Sample(None, None, "plain", word, word_caption(word, template), seed)


def object_combos(split: str = "train") -> list[tuple[str, str, str]]:
    """Every (shape, color, background) of `split`: training's allowed combinations or the held-out ones."""
    _check(split, SPLITS, "split")
    combos = itertools.product(SHAPES, COLOR_NAMES, BACKGROUNDS)
    return [c for c in combos if is_heldout(*c) == (split == "heldout")]


def sample_world(n: int, seed: int, split: str = "train") -> list[Sample]:
    """`n` samples of `split`, deterministic from `seed`. Sample i depends only on (seed, split, i), so a
    longer list extends a shorter one. Train: a WORD_FRACTION share of signs, the rest object scenes
    uniform over the allowed combinations. Heldout: object scenes uniform over the held-out ones."""
    _check(split, SPLITS, "split")
    if n < 0:
        raise ValueError(f"sample_world: n must be >= 0, got {n}")
    combos = object_combos(split)
    root = np.random.SeedSequence([seed, SPLITS.index(split)])
    samples = []
    for child in root.spawn(n):
        rng = np.random.default_rng(child)
        sample_seed = int(rng.integers(0, 2**31 - 1))
        if split == "train" and rng.random() < WORD_FRACTION:
            word = WORDS[rng.integers(len(WORDS))]
            samples.append(word_sample(word, int(rng.integers(len(WORD_TEMPLATES))), sample_seed))
        else:
            shape, color, background = combos[rng.integers(len(combos))]
            template = int(rng.integers(len(OBJECT_TEMPLATES)))
            samples.append(object_sample(shape, color, background, template, sample_seed))
    return samples


def render(sample: Sample, size: int = 32) -> np.ndarray:
    """The sample's image: uint8, shape (size, size, 3). Drawn 4x larger and box-filtered down."""
    from harness.toyworld.render import render_sample

    return render_sample(sample, size)[0]


def render_with_mask(sample: Sample, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The image and a bool (size, size) mask of the pixels fully inside the object (the sign's ink for
    signs) — where a colour probe should look."""
    from harness.toyworld.render import render_sample

    return render_sample(sample, size)


def _check(value, choices, field: str) -> None:
    if value not in choices:
        from harness.errors import UserError, did_you_mean

        raise UserError(f"toyworld: {field} '{value}' is not in the world; expected one of "
                        f"{', '.join(map(str, choices))}{did_you_mean(str(value), choices)}")
