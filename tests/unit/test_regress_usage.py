"""`loco regress` on hand-made runs: seed noise passes with the default thresholds, a moved layer fails; usage
mistakes (and runs that cannot support a verdict: a constant metric, one prompt) are one line, exit status 2,
before any sweep starts."""

import pytest
from analysis_fixtures import make_run, swap_rows

from analysis.regress import Thresholds, regress
from harness.cli import main

PROMPTS = [f"p{k}" for k in range(8)]


@pytest.fixture
def runs(tmp_path):
    a = make_run(tmp_path, "a", "locogen", swap_rows(lambda i, p: -0.3 if i == 2 else 0.0, PROMPTS, [0, 1]))
    b = make_run(tmp_path, "b", "locogen", swap_rows(lambda i, p: -0.3 if i == 2 else 0.0, PROMPTS, [0, 1], seed=1))
    moved = make_run(tmp_path, "moved", "locogen", swap_rows(lambda i, p: -0.3 if i == 0 else 0.0, PROMPTS, [0, 1]))
    trace = make_run(tmp_path, "trace", "causal_trace", swap_rows(lambda i, p: 0.0, PROMPTS, [0], reference_role="corrupted"))
    flat = make_run(tmp_path, "flat", "locogen", swap_rows(lambda i, p: 0.0, PROMPTS, [0], noise=0.0, control=0.0))
    single = make_run(tmp_path, "single", "locogen", swap_rows(lambda i, p: -0.3 if i == 2 else 0.0, ["p0"], [0, 1]))
    return a, b, moved, trace, flat, single


def test_seed_noise_alone_passes_and_a_moved_layer_fails(runs):
    a, b, moved, *_ = runs
    assert regress(a, b, Thresholds(), n_boot=200).passed
    verdict = regress(a, moved, Thresholds(), n_boot=200)
    assert not verdict.passed and verdict.groups[0].top_candidate == "cross_attn#0"
    assert verdict.failing_sites == {"style": ["cross_attn#2", "cross_attn#0"]}


@pytest.mark.parametrize("extra, message", [
    ([], "give exactly one of --candidate RUN_DIR or --candidate-model PATH"),
    (["--candidate", "B", "--candidate-model", "tiny:sd15"], "give exactly one of"),
    (["--candidate", "no/such"], "run directory 'no/such' does not exist"),
    (["--candidate", "TRACE"], "is a causal_trace run, the baseline a locogen run"),
    (["--candidate", "B", "--thresholds", "BADKEY"], "min_kendal_tau: unknown key (did you mean 'min_kendall_tau'?)"),
    (["--candidate", "B", "--thresholds", "BADVALUE"], "min_spearman: Input should be less than or equal to 1"),
    (["--candidate", "B", "--thresholds", "no/file.yaml"], "--thresholds: file 'no/file.yaml' does not exist"),
    (["--candidate", "FLAT"], "clip_t_prompt is constant (0) on all 40 rows of attribute 'style' in run 'flat'"),
    (["--candidate", "SINGLE"], "attribute 'style' of run 'single' has 1 prompt: no interval"),
])
def test_usage_mistakes_exit_2_with_one_line(runs, tmp_path, capsys, extra, message):
    a, b, _, trace, flat, single = runs
    (tmp_path / "badkey.yaml").write_text("min_kendal_tau: 0.5\n")
    (tmp_path / "badvalue.yaml").write_text("min_spearman: 3\n")
    names = {"B": str(b), "TRACE": str(trace), "BADKEY": str(tmp_path / "badkey.yaml"),
             "BADVALUE": str(tmp_path / "badvalue.yaml"), "FLAT": str(flat), "SINGLE": str(single)}
    assert main(["regress", "--baseline", str(a), *[names.get(x, x) for x in extra]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_one_prompt_baseline_is_refused_before_a_candidate_model_sweep(runs, tmp_path, capsys):
    *_, single = runs
    out = tmp_path / "candidate"
    assert main(["regress", "--baseline", str(single), "--candidate-model", "tiny:sd15", "--candidate-out", str(out),
                 "--local"]) == 2
    err = capsys.readouterr().err
    assert "attribute 'style' of run 'single' has 1 prompt: no interval" in err and err.count("\n") == 1
    assert not out.exists()  # no sweep was spent on the candidate
