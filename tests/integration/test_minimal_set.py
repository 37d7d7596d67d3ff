"""The greedy minimal set on a model whose only text path is cross-attention layer 8: the harness plans and
runs the follow-up sweep of joint swaps itself, and finds that layer 8 alone does what all 16 layers do."""

import pytest

from analysis.candidates import load_candidates
from harness.cli import main


def test_the_minimal_set_of_a_planted_model_is_its_planted_layer(planted_run, tmp_path, capsys):
    out = tmp_path / "c.yaml"
    assert main(["candidates", str(planted_run), "--minimal-set", "--max-size", "3", "--fraction", "0.9", "--local",
                 "--minimal-out", str(tmp_path / "follow"), "--bootstrap", "100", "--out", str(out)]) == 0
    (style,) = [s for s in load_candidates(out).sets if s.concept is None]
    assert style.indices == [8]
    minimal = style.minimal
    assert minimal["size"] == 1 and minimal["sites"] == style.sites and minimal["reached"]
    assert minimal["all_layer_size"] == 16
    assert minimal["effect"] == pytest.approx(minimal["all_layer_effect"])  # the planted layer is the whole path
    assert [c["size"] for c in minimal["curve"]] == [1, 2, 3, 16]
    assert (tmp_path / "follow" / "results").is_dir()


def test_minimal_set_mistakes_are_one_line(planted_run, capsys):
    assert main(["candidates", str(planted_run), "--minimal-set", "--fraction", "1.5", "--local"]) == 2
    assert "--fraction: expected a share in (0, 1], got 1.5" in capsys.readouterr().err


def test_site_sets_are_checked_when_the_job_is_loaded():
    from harness.jobs import JobError, load_job

    base = {"name": "x", "prompts": [{"prompt": "a cat in the style of monet", "target": "a cat", "attribute": "style",
                             "concept": "monet"}]}
    with pytest.raises(JobError, match="site_sets: method .causal_trace. does not read it \\(only locogen, attn_patch\\)"):
        load_job({**base, "method": "causal_trace", "site_sets": [["unet.a"]]})
    with pytest.raises(JobError, match="site_sets: expected a non-empty list"):
        load_job({**base, "method": "locogen", "site_sets": [[]]})
