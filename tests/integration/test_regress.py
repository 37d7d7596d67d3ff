"""`loco regress` on real sweeps, where the answer is known:

* A/A: the demo's LocoGen job on the toyworld model, run at seeds [0, 1] and again at [2, 3], is the same
  model asked the same questions: exit 0 (it was exit 1: τ 0.20 over layers that do nothing, and drifts
  of 6e-6 flagged with a zero drift limit and no multiplicity control);
* a moved layer: the shipped nightly job on `tiny:sd15+planted=cross_attn#8`, then on a checkpoint whose
  planted layer is #3: exit 1, naming both sites (it passed when the job ranked by random-weight CLIP,
  every row 0, every layer tied);
* a metric that is the same number on every row is refused, exit 2, one line.

The nightly job runs at CI size (one seed, 2 steps, 32 px); its prompts, model, method and metric are the
shipped ones."""

import json

import yaml

from harness.cli import main
from harness.jobs import load_job
from harness.sweep import run_sweep
from harness.toyworld.demo import HERE as DEMO

CI_SIZE = ["--set", "seeds=[0]", "--set", "steps=2", "--set", "height=32", "--set", "width=32"]


def demo_locogen(out, seeds):
    data = yaml.safe_load((DEMO / "locogen.yaml").read_text())
    job = load_job({**data, "seeds": seeds, "save_images": False}, base_dir=DEMO)
    return run_sweep(job, out=out, backend="local").run_dir


def test_a_a_the_demo_locogen_job_at_other_seeds_passes(tmp_path, capsys):
    first, second = demo_locogen(tmp_path / "s01", [0, 1]), demo_locogen(tmp_path / "s23", [2, 3])
    code = main(["regress", "--baseline", str(first), "--candidate", str(second), "--json", str(tmp_path / "r.json"),
                 "--thresholds", "jobs/regression/thresholds.yaml"])
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and report["verdict"] == "pass", capsys.readouterr().out
    assert {g["group"] for g in report["groups"]} == {"color", "shape", "background"}
    assert not any(g["paired"] for g in report["groups"])  # other seeds: other noise, unpaired intervals
    assert any(g["distinct_sites"] for g in report["groups"])  # τ was computed somewhere, not vacuously passed


def test_the_nightly_job_fails_when_the_planted_layer_moves(tmp_path, capsys):
    base = tmp_path / "base"
    assert main(["sweep", "jobs/nightly.yaml", "--out", str(base), "--local", "--quiet", *CI_SIZE]) == 0
    capsys.readouterr()
    code = main(["regress", "--baseline", str(base), "--candidate-model", "tiny:sd15+planted=cross_attn#3",
                 "--candidate-out", str(tmp_path / "moved"), "--local", "--markdown", str(tmp_path / "r.md"),
                 "--json", str(tmp_path / "r.json"), "--thresholds", "jobs/regression/thresholds.yaml"])
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 1 and report["verdict"] == "regression"
    failed = {c["name"] for c in report["checks"] if not c["passed"]}
    assert {"same top variant", "kendall_tau", "drifting_sites"} <= failed
    (group,) = report["groups"]
    assert group["metric"] == "mse" and group["paired"]  # same prompts, seeds and noise: a paired comparison
    assert {d["variant"] for d in group["drifting"]} == {"cross_attn#8", "cross_attn#3"}
    assert report["failing_sites"] == {"style": ["cross_attn#8", "cross_attn#3"]}
    markdown = (tmp_path / "r.md").read_text()
    assert markdown.startswith("# loco regress: REGRESSION") and "cross_attn#8 → cross_attn#3" in markdown
    assert "failing sites cross_attn#8, cross_attn#3" in markdown
    # the same job on the same checkpoint, compared with itself, passes
    assert main(["regress", "--baseline", str(base), "--candidate", str(base)]) == 0


def test_a_metric_constant_over_the_rows_is_refused(tmp_path, capsys):
    # the nightly job as it shipped before: ranked by CLIP with random weights, which reads 0 on every row
    run = tmp_path / "clip"
    assert main(["sweep", "jobs/nightly.yaml", "--out", str(run), "--local", "--quiet", *CI_SIZE,
                 "--set", "metrics=[clip_score, mse]", "--set", "scorers={clip: {allow_random: true}}",
                 "--set", "prompts=[{prompt: a cat in the style of monet, target: a cat, attribute: style},"
                 "{prompt: a house in the style of van gogh, target: a house, attribute: style}]"]) == 0
    capsys.readouterr()
    assert main(["regress", "--baseline", str(run), "--candidate", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "clip_t_prompt is constant (0)" in err and "metrics that vary in this run: mse" in err
