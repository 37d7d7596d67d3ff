"""The toyworld probes read what a render shows — ≥97% per attribute on renders of the combinations held
out of training — and the `probe` scorer turns that into row columns: the predicted label, the
probability and correctness of the label each prompt names, for every attribute and for the row's own."""

import numpy as np
import pytest

from harness.metrics import ScoreBatch, ScorerError, build_scorers, direction
from harness.metrics.probe import ProbeScorer, probe_attribute
from harness.results.store import to_table
from harness.toyworld import world
from harness.toyworld.probes import WEIGHTS, load_probes, read_metadata
from harness.toyworld.probes.labels import caption_labels, sample_labels
from harness.toyworld.probes.train import evaluate


@pytest.fixture(scope="module")
def probes():
    return load_probes()


def test_the_shipped_weights_are_small_and_read_the_worlds_vocabulary_at_its_size():
    assert WEIGHTS.stat().st_size < 600_000
    meta = read_metadata(WEIGHTS)
    assert meta["labels"] == {"shape": list(world.SHAPES), "color": list(world.COLOR_NAMES),
                              "background": list(world.BACKGROUNDS), "word": list(world.WORDS)}
    assert meta["size"] == 32


def test_probes_reach_97_percent_on_heldout_renders(probes):
    results = evaluate(probes, n=400, seed=11)  # seeds the training never drew
    assert set(results) == {"shape", "color", "background", "word"}
    for attr, r in results.items():
        assert r["n"] >= 100, attr
        assert r["accuracy"] >= 0.97, (attr, r)


@pytest.mark.parametrize("template", range(len(world.OBJECT_TEMPLATES)))
def test_every_caption_phrasing_reads_back_as_its_samples_labels(template):
    for shape, color, background in world.object_combos("train")[::7] + world.object_combos("heldout"):
        sample = world.object_sample(shape, color, background, template)
        assert caption_labels(sample.caption) == sample_labels(sample), sample.caption
    for word in world.WORDS:
        sign = world.word_sample(word, template)
        assert caption_labels(sign.caption) == {"word": word}  # a sign's caption names no background


def test_prompt_rows_attribute_names_map_to_probe_heads():
    assert [probe_attribute(a) for a in ("color", "shape", "background", "text", "word", "style", None)] == [
        "color", "shape", "background", "word", "word", None, None]


def test_the_scorer_fills_label_probability_and_correctness_per_attribute_and_for_the_rows_attribute(probes):
    red = world.object_sample("circle", "red", "stripes", seed=5)
    sign = world.word_sample("CAT", seed=5)
    images = np.stack([world.render(red, 32), world.render(sign, 32), world.render(red, 32)])
    scorer = build_scorers(["probe"])[0]
    assert isinstance(scorer, ProbeScorer)
    out = scorer.score(ScoreBatch(
        images=images, prompts=[red.caption, sign.caption, "a blue circle on a striped background"],
        targets=["a blue circle on a striped background", "a sign that says DOG", None],
        attributes=["color", "text", "color"]))
    assert out["probe_color"][:1] + out["probe_shape"][:1] + out["probe_word"][1:2] == ["red", "circle", "CAT"]
    assert out["probe_color_ok"] == [1.0, None, 0.0]  # the sign names no colour; row 3 asked for blue
    assert out["probe_color_p"][0] > 0.9 and out["probe_color_p_target"][0] < 0.05
    assert out["probe_p_prompt"] == [out["probe_color_p"][0], out["probe_word_p"][1], out["probe_color_p"][2]]
    assert out["probe_ok_prompt"] == [1.0, 1.0, 0.0]
    assert out["probe_p_target"][1] == out["probe_word_p_target"][1] < 0.05 and out["probe_p_target"][2] is None
    assert out["probe_shape_p"][1] is None and out["probe_background_p"][1] is None
    row = {k: v[0] for k, v in out.items()} | scorer.identity()
    assert to_table([row]).schema.field("probe_color").type == "string"


def test_directions_follow_clip_prompt_a_falls_prompt_b_rises():
    assert direction("probe_p_prompt") == direction("probe_color_p") == direction("probe_shape_ok") == -1
    assert direction("probe_p_target") == direction("probe_word_p_target") == 1
    assert direction("probe_color") == 0


def test_a_missing_or_foreign_weights_file_is_one_line_naming_the_option(tmp_path):
    with pytest.raises(ScorerError, match=r"^scorers\.probe\.weights: '.*nope\.safetensors' does not exist"):
        build_scorers(["probe"], {"probe": {"weights": str(tmp_path / "nope.safetensors")}})
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ScorerError, match=r"^scorers\.probe\.weights: .* is not a toyworld probes file"):
        build_scorers(["probe"], {"probe": {"weights": str(bad)}})
