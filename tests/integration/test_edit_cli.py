"""`loco edit` and `loco edit-eval` from the command line: outputs, evaluation rows, one-line mistakes."""

import duckdb
import pytest

from harness.cli import main


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    spec = root / "edit.yaml"
    spec.write_text("model: tiny:sd15\nmethod: locoedit\nsites: {kind: cross_attn, index: \"8-9\"}\n"
                    "edits:\n  - {concept: van gogh, target: painting}\n")
    assert main(["edit", str(spec), "--out", str(root / "out")]) == 0
    return root


def evaluate(edited, name: str, prompts_csv: str, *flags: str) -> list[dict]:
    """`loco edit-eval` of the edited model on `prompts_csv` into edited/NAME; its rows by set and seed."""
    prompts = edited / f"{name}.csv"
    prompts.write_text(prompts_csv)
    assert main(["edit-eval", str(edited / "out"), "--prompts", str(prompts), "--out", str(edited / name), *flags]) == 0
    return duckdb.sql(f"SELECT * FROM '{edited / name / 'results.parquet'}' ORDER BY set, seed").to_arrow_table().to_pylist()


def test_edit_eval_writes_rows_with_the_edit_id_for_each_prompt_set(edited, capsys):
    rows = evaluate(edited, "eval", "prompt,set\na painting in the style of van gogh,efficacy\n"
                    "van gogh sunflowers,generalization\na photo of a dog,specificity\n", "--seeds", "0-1")
    assert len(rows) == 6 and {r["set"] for r in rows} == {"efficacy", "generalization", "specificity"}
    assert len({r["edit_id"] for r in rows}) == 1 and rows[0]["edit_id"].startswith("locoedit-")
    assert all(r["embed_shift"] == 0.0 for r in rows)  # LocoEdit leaves the text encoder alone
    assert all(r["kv_shift"] > 0 for r in rows)  # and moves the edited projections' output


def test_edit_eval_with_clip_adds_the_semantic_columns(edited, capsys):
    rows = evaluate(edited, "eval-clip", "prompt,set,target\na painting in the style of van gogh,efficacy,a painting in "
                    "the style of painting\na photo of a dog,specificity,\n", "--clip-random", "--steps", "2")
    efficacy, specificity = rows
    assert efficacy["clip_edit_direction"] == pytest.approx(efficacy["clip_target_shift"] - efficacy["clip_concept_shift"])
    assert specificity["clip_target_shift"] is None and -1 <= specificity["clip_image_cos"] <= 1
    assert "clip_edit_direction" in capsys.readouterr().out  # in the per-set summary


def test_edit_eval_metrics_score_both_models_images_under_their_own_and_original_names(edited, capsys):
    rows = evaluate(edited, "probe-eval", "prompt,set,attribute\na red circle on a plain background,efficacy,color\n"
                    "a blue square on a plain background,specificity,color\n", "--metrics", "probe")
    for row in rows:  # the tiny model draws noise; what matters is that both images were read, each under its name
        assert row["probe_color"] in ("red", "green", "blue", "yellow") and row["probe_color_original"] is not None
        assert row["probe_ok_prompt"] == row["probe_color_ok"]
        assert row["probe_ok_prompt_original"] == row["probe_color_ok_original"]
    summary = (edited / "probe-eval" / "summary.json").read_text()
    assert '"probe_color_ok_original"' in summary and "probe_ok_prompt=" in capsys.readouterr().out
    assert main(["edit-eval", str(edited / "out"), "--prompts", str(edited / "probe-eval.csv"), "--out", str(edited / "x"),
                 "--metrics", "ssim"]) == 2
    assert "--metrics: ssim compare with an un-intervened image" in capsys.readouterr().err


@pytest.mark.parametrize("body, message", [
    ("model: tiny:sd15\nmethod: locoedit\nedits: [{concept: x, target: y}]\nlambda: 0\n", "lambda: expected a value > 0"),
    ("model: tiny:sd15\nmethod: locoedt\nedits: [{concept: x}]\n", "method: got 'locoedt'"),
    ("model: tiny:sd15\nmethod: locoedit\n", "edits: required"),
])
def test_mistakes_exit_2_with_one_line(body, message, tmp_path, capsys):
    spec = tmp_path / "e.yaml"
    spec.write_text(body)
    assert main(["edit", str(spec), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not (tmp_path / "o").exists()


def test_revert_from_the_command_line_and_a_non_empty_out_is_refused(edited, capsys):
    assert main(["edit", "--revert", str(edited / "out"), "--out", str(edited / "back")]) == 0
    assert not (edited / "back" / "loco_edit").exists() and (edited / "back" / "model_index.json").is_file()
    assert main(["edit", str(edited / "edit.yaml"), "--out", str(edited / "back")]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
