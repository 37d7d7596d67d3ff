"""`loco regress` on real sweeps of a planted tiny model: an identical re-run passes, a checkpoint whose
planted layer moved is a regression (exit 1), with a Markdown and a JSON report."""

import json

import pytest

from harness.cli import main


def test_an_identical_rerun_on_the_same_checkpoint_passes(planted_run, tmp_path, capsys):
    code = main(["regress", "--baseline", str(planted_run), "--candidate-model", "tiny:sd15+planted=cross_attn#8",
                 "--candidate-out", str(tmp_path / "rerun"), "--local", "--json", str(tmp_path / "r.json"),
                 "--bootstrap", "200"])
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and report["verdict"] == "pass"
    (group,) = report["groups"]
    assert group["kendall_tau"] == pytest.approx(1.0) and group["top_candidate"] == "cross_attn#8" and not group["drifting"]
    assert "# loco regress: PASS" in capsys.readouterr().out


def test_a_checkpoint_whose_planted_layer_moved_is_a_regression(planted_run, tmp_path, capsys):
    code = main(["regress", "--baseline", str(planted_run), "--candidate-model", "tiny:sd15+planted=cross_attn#3",
                 "--candidate-out", str(tmp_path / "moved"), "--local", "--markdown", str(tmp_path / "r.md"),
                 "--json", str(tmp_path / "r.json"), "--bootstrap", "200"])
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 1 and report["verdict"] == "regression"
    failed = {c["name"] for c in report["checks"] if not c["passed"]}
    assert {"same top variant", "kendall_tau", "drifting_sites"} <= failed
    drifting = {d["variant"] for d in report["groups"][0]["drifting"]}
    assert drifting == {"cross_attn#8", "cross_attn#3"}
    assert {d["interval"] for d in report["groups"][0]["drifting"]} == {"paired"}  # same prompts, seeds and noise
    markdown = (tmp_path / "r.md").read_text()
    assert markdown.startswith("# loco regress: REGRESSION") and "cross_attn#8 → cross_attn#3" in markdown
    # comparing the moved run itself as a candidate run gives the same verdict
    assert main(["regress", "--baseline", str(planted_run), "--candidate", str(tmp_path / "moved"), "--bootstrap", "100"]) == 1
