"""`loco plan` reads the model's own structure (issue #20 item 12): a local model's configs give its site
counts, sampler defaults, scheduler and tokenizers without loading a weight, and the plan validates the
job with the same checks as the sweep's worker, so the two agree — on the toyworld model a LocoGen plan
counts the sweep's 6 windows and 176 rows (11 prompts × 2 seeds × 8 images) at 15 steps and 32 px (not
SD1.5's 15 windows at 50 steps and 512 px), a window wider than its 7 layers is refused by both, and
`step_start: 10` on tiny SD1.x (PNDM: 11 denoiser calls for 10 steps) is accepted by both."""

import pytest

from harness.cli import main
from harness.errors import JobError
from harness.jobs import load_job
from harness.preflight import plan
from harness.toyworld.demo import HERE

LONG = "a house " + "with a garden " * 30 + "in the style of van gogh"


@pytest.fixture
def no_weights(monkeypatch):
    """Fail the test if anything loads a model or reads a weight file."""
    import safetensors.torch

    import harness.models
    import harness.models.loading as loading

    for module, name in ((harness.models, "load_model"), (loading, "load_model"), (safetensors.torch, "load_file")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("the plan loaded weights"))


def test_the_toyworld_plan_counts_what_its_sweep_runs(no_weights):
    result = plan(load_job(HERE / "locogen.yaml"))
    assert (result.shape, result.variants, result.expected_rows, result.steps) == ("config", 6, 176, 15)
    assert result.first_variants[0] == "cross_attn#0-1"
    assert result.denoising_steps == 176 * 15


@pytest.mark.parametrize("argv", [["plan"], ["sweep", "--dry-run"]])
def test_a_window_wider_than_the_models_layers_is_refused_by_plan_and_dry_run(argv, capsys, no_weights):
    assert main([*argv, str(HERE / "locogen.yaml"), "--set", "window=12"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "window: 12 is larger than the 7 selected sites" in err, err


def test_step_windows_are_counted_in_denoiser_calls_as_the_sweep_counts_them():
    accepted = plan(load_job({"name": "s", "method": "attn_patch", "steps": 10, "step_start": 10,
                              "prompts": [{"prompt": "a", "target": "b"}], "sites": "cross_attn#15"}))
    assert accepted.steps == 10 and accepted.calls == 11 and accepted.denoising_steps == 3 * 11
    with pytest.raises(JobError, match="step_start: 11 is not below the 11 denoising steps"):
        plan(load_job({"name": "s", "method": "attn_patch", "steps": 10, "step_start": 11,
                       "prompts": [{"prompt": "a", "target": "b"}], "sites": "cross_attn#15"}))


def test_the_plan_checks_prompts_against_the_token_limit_as_the_sweep_does(no_weights):
    with pytest.raises(JobError, match=r"prompts\[0\].concept: 'van gogh' falls past token 77"):
        plan(load_job({"name": "t", "model": "toyworld", "method": "causal_trace",
                       "prompts": [{"prompt": LONG, "concept": "van gogh"}]}))
    cut = plan(load_job({"name": "t", "model": "toyworld", "method": "locogen",
                         "prompts": [{"prompt": "a red circle", "target": LONG}]}))
    assert any("prompts[0].target:" in w and "reads the first 77" in w for w in cut.warnings)
