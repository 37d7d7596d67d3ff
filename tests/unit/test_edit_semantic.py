"""The CLIP efficacy columns of an edit's evaluation, on a constructed case whose answer is known: a stub
encoder that sees only colour, an original image that is red and an edited one that is blue."""

import numpy as np
import pytest

from harness.edit.semantic import COLUMNS, semantic_shift

COLOURS = {"red": [1.0, 0.0, 0.0], "green": [0.0, 1.0, 0.0], "blue": [0.0, 0.0, 1.0]}


class ColourClip:
    """Image features: the unit mean colour; text features: the unit vector of the colour word it names."""

    def encode_images(self, images):
        feats = np.stack([im.reshape(-1, 3).mean(0) for im in images]).astype(np.float64)
        return feats / np.linalg.norm(feats, axis=1, keepdims=True)

    def encode_texts(self, texts):
        return np.array([next(v for k, v in COLOURS.items() if k in t) for t in texts])


def image(colour: str, n: int = 2) -> np.ndarray:
    return np.broadcast_to(np.array(COLOURS[colour]) * 255, (n, 8, 8, 3)).astype(np.uint8)


def test_an_edit_that_works_moves_away_from_the_concept_and_toward_the_target():
    out = semantic_shift(ColourClip(), image("red"), image("blue"), "a red car", "a blue car")
    assert set(out) == set(COLUMNS)
    assert out["clip_concept_shift"] == pytest.approx([-1.0, -1.0])
    assert out["clip_target_shift"] == pytest.approx([1.0, 1.0])
    assert out["clip_edit_direction"] == pytest.approx([2.0, 2.0])
    assert out["clip_image_cos"] == pytest.approx([0.0, 0.0])


def test_an_edit_toward_something_else_has_a_negative_direction():
    out = semantic_shift(ColourClip(), image("red"), image("green"), "a red car", "a blue car")
    assert out["clip_concept_shift"] == pytest.approx([-1.0, -1.0]) and out["clip_target_shift"] == pytest.approx([0, 0])
    wrong = semantic_shift(ColourClip(), image("blue"), image("red"), "a red car", "a blue car")
    assert all(d < 0 for d in wrong["clip_edit_direction"])


def test_an_untouched_prompt_stays_put_and_has_no_target_columns():
    out = semantic_shift(ColourClip(), image("green", 3), image("green", 3), "a green field", None)
    assert out["clip_concept_shift"] == [0.0] * 3 and out["clip_image_cos"] == pytest.approx([1.0] * 3)
    assert out["clip_target_shift"] == [None] * 3 and out["clip_edit_direction"] == [None] * 3
