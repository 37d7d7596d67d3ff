"""The toyworld generator: deterministic, held-out combinations never trained on, captions that name
their attributes, renders of the promised shape and colour."""

import numpy as np
import pytest

from harness.errors import UserError
from harness.toyworld import world
from harness.toyworld.world import (
    BACKGROUND_ADJECTIVES,
    BACKGROUND_NOUNS,
    COLORS,
    HELDOUT_COLOR_BACKGROUND,
    HELDOUT_SHAPE_COLOR,
    object_sample,
    render,
    render_with_mask,
    sample_world,
    word_sample,
)


def test_same_seed_same_world_and_pixels():
    a, b = sample_world(40, seed=7), sample_world(40, seed=7)
    assert a == b
    assert all(np.array_equal(render(x, 32), render(y, 32)) for x, y in zip(a[:8], b[:8]))
    assert sample_world(40, seed=8) != a
    assert sample_world(10, seed=7) == a[:10]  # a longer list extends a shorter one


def test_heldout_combinations_never_in_train_and_only_in_heldout():
    train = sample_world(2000, seed=0)
    assert not any(s.heldout for s in train)
    pairs = {(s.shape, s.color) for s in train} | {(s.color, s.background) for s in train}
    assert not pairs & (HELDOUT_SHAPE_COLOR | HELDOUT_COLOR_BACKGROUND)
    heldout = sample_world(200, seed=0, split="heldout")
    assert all(s.heldout and s.kind == "object" for s in heldout)
    seen = {(s.shape, s.color) for s in heldout} | {(s.color, s.background) for s in heldout}
    assert HELDOUT_SHAPE_COLOR | HELDOUT_COLOR_BACKGROUND <= seen
    # every attribute value still appears in training
    assert {s.shape for s in train} == set(world.SHAPES) | {None}
    assert {s.color for s in train} == set(world.COLOR_NAMES) | {None}
    assert {s.word for s in train} == set(world.WORDS) | {None}


def test_captions_mention_their_attributes():
    for s in sample_world(300, seed=1):
        if s.kind == "word":
            assert s.word in s.caption.split() and s.shape is None and s.color is None
        else:
            words = s.caption.replace(",", "").split()
            assert s.shape in words and s.color in words
            assert BACKGROUND_ADJECTIVES[s.background] in s.caption or BACKGROUND_NOUNS[s.background] in s.caption
    assert len({s.caption.split(s.color)[0] for s in sample_world(300, 1) if s.color}) >= 3  # several phrasings


@pytest.mark.parametrize("size", [32, 64])
def test_render_shape_dtype_and_object_colour(size):
    for color, rgb in COLORS.items():
        image, mask = render_with_mask(object_sample("square", color, "stripes", seed=3), size)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8 and mask.shape == (size, size)
        assert mask.mean() > 0.15  # the object covers a real share of the image
        assert np.allclose(image[mask].mean(0), rgb, atol=1)  # pixels inside the object are its colour
    image, ink = render_with_mask(word_sample("CAT"), size)
    assert ink.sum() > 0 and image[ink].max() <= 10  # black ink on the sign


def test_unknown_attribute_is_one_line_with_a_suggestion():
    with pytest.raises(UserError, match="color 'rde'.*did you mean 'red'"):
        object_sample("circle", "rde", "plain")
    with pytest.raises(UserError, match="split"):
        sample_world(3, 0, split="test")


def test_colour_check_names_the_colour_of_every_render():
    from harness.toyworld.selfcheck import classify_color

    samples = sample_world(200, seed=2) + sample_world(50, seed=2, split="heldout")
    for s in samples:
        assert classify_color(render(s, 32)) == s.color  # signs (no colour) classify as None


def test_check_prompts_cover_both_splits():
    from harness.toyworld.selfcheck import check_prompts

    train, heldout = check_prompts(4), check_prompts(4, heldout=True)
    assert len(train) == 16 and {c for _, c in train} == set(world.COLOR_NAMES)
    assert heldout and {c for _, c in heldout} == {"green", "blue", "yellow"}  # red is in no held-out pair
    captions = {split: {world.object_caption(*combo, template=t) for combo in world.object_combos(split)
                        for t in range(len(world.OBJECT_TEMPLATES))} for split in world.SPLITS}
    assert {p for p, _ in heldout} <= captions["heldout"] and {p for p, _ in train} <= captions["train"]


def test_partial_captions_are_true_of_the_image_and_each_drops_or_keeps_one_attribute():
    from harness.toyworld.probes.labels import caption_labels, sample_labels

    scene = object_sample("triangle", "blue", "grid", seed=1)
    partial = world.partial_captions(scene)
    assert len(partial) == len(world.PARTIAL_TEMPLATES)
    named = [caption_labels(c) for c in partial]
    for labels in named:  # never a label the image does not show
        assert labels and labels.items() <= sample_labels(scene).items()
    assert sorted(len(labels) for labels in named) == [1, 1, 1, 2, 2, 2]
    for attr in ("shape", "color", "background"):  # each attribute is once the only one named, once the one left out
        assert [set(labels) for labels in named].count({attr}) == 1
        assert sum(attr not in labels and len(labels) == 2 for labels in named) == 1
    sign = word_sample("CAT", template=1)
    assert world.partial_captions(sign) == (sign.caption,)
