"""The shipped toyworld model draws what it is asked, as the issue's quality bar states: on images it
generates (its own sampler defaults), each attribute's probe reads the caption's label in at least 80% of
images — on training combinations, on every held-out (shape, colour) and (colour, background)
combination, and for every rendered word. Chance is 25% for every attribute.

Two seeds per prompt; MODEL_CARD.md reports the same measurement over more seeds, with intervals over
prompts. Generation is seeded, so on one machine the numbers repeat exactly."""

import numpy as np
import pytest

from harness.models import load_model, set_reproducible
from harness.toyworld.probes import load_probes
from harness.toyworld.probes.quality import BAR, BAR_CASES, generated_accuracy, quality_prompts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rows():
    set_reproducible(True)
    return generated_accuracy(load_model("toyworld", "cpu"), quality_prompts(24), [0, 1], load_probes())


@pytest.mark.parametrize("split,attribute", BAR_CASES)
def test_each_attribute_is_drawn_as_captioned_in_at_least_80_percent_of_images(rows, split, attribute):
    ok = [r["ok"] for r in rows if r["split"] == split and r["attribute"] == attribute]
    assert len(ok) >= 24  # every held-out combination / word phrasing, two seeds each
    assert np.mean(ok) >= BAR, f"{split} {attribute}: {np.mean(ok):.3f} of {len(ok)} images"


def test_the_heldout_prompts_are_every_heldout_combination(rows):
    from harness.toyworld.world import object_combos

    assert len({r["prompt"] for r in rows if r["split"] == "heldout"}) == len(object_combos("heldout")) == 15
