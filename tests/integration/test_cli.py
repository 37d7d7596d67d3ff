"""The `loco` command: every verb works, and every user mistake is one line on stderr with exit status 2."""

import json

import pytest

from harness.cli import build_parser, main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("loco: error: "), err
    assert "Traceback" not in err
    return lines[0]


PRINTED = {}  # what the default sweep printed


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    import contextlib
    import io

    out, printed = tmp_path_factory.mktemp("cli") / "run", io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["sweep", "--local", "--out", str(out), "--set", "seeds=[0]",
                     "--set", "sites={kind: cross_attn, index: 7-10}"])
    assert code == 0
    PRINTED["sweep"] = printed.getvalue()
    return out


def test_help_describes_every_verb():
    text = build_parser().format_help()
    for verb in ("sweep", "rank", "sites", "prompts"):
        assert verb in text


def test_the_default_sweep_prints_a_real_ranking_its_planted_layer_first(small_run):
    assert (small_run / "manifest.json").is_file()
    tables = [block.splitlines() for block in PRINTED["sweep"].split("\n\n") if "rank  variant" in block]
    headers = [next(line for line in t if line.startswith("locogen · ")) for t in tables]
    assert [h.split(" · ")[1] for h in headers] == ["object", "style", "text"]  # one table per attribute
    for table in tables:
        ranked = [line.split() for line in table if line.strip()[:1].isdigit()]
        assert ranked[0][1] == "cross_attn#8" and float(ranked[0][2]) > 0
        assert {r[1]: float(r[2]) for r in ranked[1:]} == {"cross_attn#7": 0.0, "cross_attn#9": 0.0, "cross_attn#10": 0.0}


def test_rank_ranks_each_attribute_under_the_paper_rule_with_n_beside_every_interval(small_run, capsys):
    code, out, _ = run(capsys, "rank", str(small_run))
    assert code == 0
    assert "locogen · style · locogen/style: highest mse" in out and "locogen · object ·" in out
    assert "n=2" in out and "no interval (n=1)" in out  # style has 2 prompts, object and text 1
    assert "only 2 prompts (< 10)" in out and "1 prompt: no interval and no P(top)" in out


def test_rank_json_has_the_documented_fields(small_run, capsys):
    code, out, _ = run(capsys, "rank", str(small_run), "--json", "--bootstrap", "100")
    assert code == 0
    records = json.loads(out)
    style = [r for r in records if r["attribute"] == "style" and r["concept"] is None]
    assert [r["rank"] for r in style] == [1, 2, 3, 4]
    assert set(style[0]) >= {"site", "rank", "effect", "ci_low", "ci_high", "p_top", "n_prompts", "selected", "status"}
    assert style[0]["site"].startswith("unet.up_blocks.") and style[0]["n_prompts"] == 2
    text = [r for r in records if r["attribute"] == "text"]
    assert all(r["ci_low"] is None and r["p_top"] is None for r in text)  # one prompt: no interval, no P(top)


def test_pooled_rank_table(small_run, capsys):
    code, out, _ = run(capsys, "rank", str(small_run), "--pooled", "--metric", "ssim", "--top", "2")
    assert code == 0 and "ssim (mean; lower = stronger effect; every attribute pooled)" in out
    assert "references: control 1" in out and "n=4" in out
    code, out, _ = run(capsys, "rank", str(small_run), "--pooled", "--json", "--bootstrap", "100")
    assert set(json.loads(out)[0]) >= {"site", "rank", "mean", "ci_low", "ci_high", "n", "n_prompts"}


def test_sites_prints_the_table(capsys):
    code, out, _ = run(capsys, "sites", "tiny:sdxl", "--kind", "cross_attn")
    assert code == 0 and "unet.up_blocks.0.attentions.2.transformer_blocks.1.attn2" in out
    assert len(out.strip().splitlines()) == 71


def test_dry_run_prints_the_plan(capsys):
    code, out, _ = run(capsys, "sweep", "--dry-run", "--set", "window=2")
    assert code == 0 and "generations      136 = 4 prompts × 2 seeds × 17" in out


def test_plan_prints_units_steps_rows_cost_and_checkpoints_without_loading_a_model(capsys, monkeypatch):
    import harness.models
    import harness.models.loading as loading

    for module in (harness.models, loading):
        monkeypatch.setattr(module, "load_model", lambda *a, **k: pytest.fail("plan loaded a model"))
    code, out, _ = run(capsys, "plan", "--json", "--set", "model=stabilityai/stable-diffusion-xl-base-1.0",
                       "--set", "window=3", "--set", "metrics=[clip_score, mse]",
                       "--set", "scorers.clip={model: ViT-B-32, weights: openai}")
    plan = json.loads(out)
    assert code == 0 and plan["arch"] == "sdxl" and plan["variants"] == 68 and plan["references"] == 2
    assert plan["generations"] == plan["expected_rows"] == 4 * 2 * 70
    assert plan["denoising_steps"] == 4 * 2 * 70 * 50  # SDXL's 50 steps
    assert plan["gpu_hours"] == pytest.approx(4 * 2 * 70 * 50 * 0.10 / 3600, rel=1e-3)
    roles = {c["role"]: c for c in plan["checkpoints"]}
    assert roles["model"]["found"] is False and "clip" in roles


def test_prompts_writes_p3_pairs(tmp_path, capsys):
    out = tmp_path / "pairs.csv"
    code, _, _ = run(capsys, "prompts", "simplebench", "--limit", "3", "--out", str(out))
    lines = out.read_text().splitlines()
    assert code == 0 and len(lines) == 4 and lines[0].startswith("id,prompt,target,text,target_text")


@pytest.mark.parametrize("argv, expected", [
    (["sweep", "missing.yaml"], "job file 'missing.yaml' does not exist"),
    (["sweep", "--set", "windw=2"], "unknown key (did you mean 'window'?)"),
    (["sweep", "--set", "sites=unet.mid_block.attentions.0.transformer_blocks.0.attn3", "--dry-run"], "closest"),
    (["sweep", "--set", "model=stabilityai/not-cached", "--dry-run"], "not in the local Hugging Face cache"),
    (["sweep", "--set", "model=tiny:sd16", "--dry-run"], "unknown tiny model; expected one of tiny:sd15"),
    (["sweep", "--set", "model=./no/such/dir", "--dry-run"], "no such directory"),
    (["sweep", "--set", "oops"], "--set: expected KEY=VALUE"),
    (["rank", "/nonexistent"], "run directory '/nonexistent' does not exist"),
    (["sites", "tiny:sdxl", "--kind", "joint_attn"], "no 'joint_attn' sites"),
    (["prompts", "concept", "--concept", "van gog"], "did you mean 'van gogh'"),
    (["prompts", "concept", "--concept", "grumpy cat"], "unknown concept 'grumpy cat'"),  # no prompt file
    (["sweep", "--set", "model.x=1"], "--set model.x: 'model' is not a mapping of keys"),
    (["sweep", "--set", "seeds=[1"], "--set seeds: value '[1' is not valid YAML"),
    (["sweep", "--set", "scorers.clp.model=x", "--dry-run"], "scorers: clp: unknown scorer (did you mean 'clip'?)"),
    (["score", "x.png", "--metrics", "foo"], "unknown metric 'foo'"),
    (["score", "x.png", "--metrics", "ocr", "--option", "ocrr.device=cpu"],
     "--option.ocrr: unknown scorer (did you mean 'ocr'?)"),
])
def test_user_mistakes_are_one_line_errors(capsys, argv, expected):
    assert expected in one_line_error(capsys, *argv)


def test_a_bad_metric_for_rank_names_the_closest(small_run, capsys):
    assert "did you mean 'mse'" in one_line_error(capsys, "rank", str(small_run), "--metric", "msee")


def test_only_effect_columns_are_ranked_and_resamples_are_positive(small_run, capsys):
    assert "'seed' is not a metric column" in one_line_error(capsys, "rank", str(small_run), "--metric", "seed")
    assert "'seed' is not a metric column" in one_line_error(capsys, "rank", str(small_run), "--pooled", "--metric",
                                                             "seed")
    assert "--order: only with --pooled" in one_line_error(capsys, "rank", str(small_run), "--order", "asc")
    assert "--bootstrap: expected at least 1" in one_line_error(capsys, "rank", str(small_run), "--bootstrap", "0")


def test_a_job_file_with_a_yaml_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmethod: [locogen\n")
    assert "not valid YAML" in one_line_error(capsys, "sweep", str(bad))
