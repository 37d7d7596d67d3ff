"""`loco report` writes one self-contained HTML file that a real headless browser renders: no console
errors, every plot drawn, every image loaded, nothing fetched from outside, a screenshot that is not blank.
It shows what a reviewer needs to trust a decision: causal tracing's clean / corrupted / restored images at
the chosen states, an edit's efficacy and specificity with before/after images, a run column when several
runs share the candidate table, the agreement table only when it has something to say, and a regression
verdict that names the failing sites."""

import numpy as np
import pytest
from analysis_fixtures import make_run, swap_rows
from browser import load_page

from harness.cli import main

TRACE = dict(n_sites=16, attribute="style", control=0.3, reference_role="corrupted")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, planted_run):
    root = tmp_path_factory.mktemp("report")
    trace = make_run(root, "trace", "causal_trace",
                     swap_rows(lambda i, p: 0.3 if i == 8 else 0.0, [f"p{k}" for k in range(6)], [0, 1], **TRACE),
                     n_sites=16)
    return root, planted_run, trace


@pytest.fixture(scope="module")
def edit_eval(tmp_path_factory):
    """A LocoEdit on the tiny model and its evaluation on one prompt per set."""
    root = tmp_path_factory.mktemp("edit")
    (root / "edit.yaml").write_text("model: tiny:sd15\nmethod: locoedit\nsites: {kind: cross_attn, index: \"8-9\"}\n"
                                    "edits:\n  - {concept: van gogh, target: painting}\n")
    (root / "eval.csv").write_text("prompt,set\na painting in the style of van gogh,efficacy\n"
                                   "van gogh sunflowers,generalization\na photo of a dog,specificity\n")
    assert main(["edit", str(root / "edit.yaml"), "--out", str(root / "edit")]) == 0
    assert main(["edit-eval", str(root / "edit"), "--prompts", str(root / "eval.csv"), "--out", str(root / "eval"),
                 "--steps", "2"]) == 0
    return root / "eval"


def test_the_report_renders_in_a_headless_browser(runs, planted_trace_run, edit_eval, tmp_path):
    root, real, trace = runs
    out = tmp_path / "report.html"
    assert main(["report", str(real), str(planted_trace_run), str(edit_eval), "--out", str(out),
                 "--bootstrap", "200"]) == 0
    text = out.read_text()
    assert "<script src=" not in text and "<link" not in text  # plotly.js is inline, not linked
    assert "Candidate layer sets" in text and "Provenance" in text and "<th>run</th>" in text
    # causal tracing: clean, corrupted and the restore at the one selected state, for two prompts
    assert "clean, corrupted, restored at the candidate set" in text and text.count("<figcaption>restored cross_attn#8") == 2
    # the edit: its table (original → edited) and its before/after images
    assert "efficacy" in text and "specificity" in text and "Before / after" in text and "mse to original" in text
    page = load_page(out)
    assert page["errors"] == []
    assert page["plots"] >= 5 and page["rendered"] == page["plots"]
    # LocoGen: clean, target and 16 layers for 2 prompts; tracing: 3 for 2 prompts; the edit: 2 for 3 prompts
    assert len(page["images"]) == 2 * 18 + 2 * 3 + 3 * 2 and all(page["images"])
    assert page["external"] == []
    pixels = np.asarray(page["screenshot"], dtype=np.float64)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.005  # not a blank page


def test_the_agreement_table_is_filled_or_left_out(runs, planted_agree_runs, tmp_path):
    root, real, trace = runs
    loco, contrib = planted_agree_runs["locogen"], planted_agree_runs["attn_contrib"]
    assert main(["report", str(loco), str(contrib), "--out", str(tmp_path / "a.html")]) == 0  # default bootstrap
    text = (tmp_path / "a.html").read_text()
    assert "Agreement across localizers" in text  # LocoGen and attn_contrib on the same 12 prompts and 16 layers
    section = text.split("Agreement across localizers")[1].split("</table>")[0]
    assert "<th>top-6 overlap</th>" in section and "<td></td>" not in section
    # one row (LocoGen cannot tell the planted layer from 0 on a concept's 6 prompts): full agreement on layer 8
    assert section.count("<tr>") == 2
    assert "<td>(all)</td><td>locogen</td><td>locogen</td><td>attn_contrib</td><td>attn_contrib</td><td>12</td><td>16</td>" \
        "<td>1</td><td>1 of 1</td><td>cross_attn#8</td><td>cross_attn#8</td>" in section
    # the hand-made trace names its layers differently: nothing in common, no empty table
    assert main(["report", str(real), str(trace), "--out", str(tmp_path / "b.html"), "--bootstrap", "100"]) == 0
    assert "Agreement across localizers" not in (tmp_path / "b.html").read_text()


def test_two_runs_of_one_method_get_the_regression_verdict_naming_the_failing_sites(runs, tmp_path):
    root, real, trace = runs
    other = make_run(root, "trace-moved", "causal_trace",
                     swap_rows(lambda i, p: 0.3 if i == 3 else 0.0, [f"p{k}" for k in range(6)], [0, 1], **TRACE),
                     n_sites=16)
    out = tmp_path / "r.html"
    assert main(["report", str(trace), str(other), "--out", str(out), "--bootstrap", "100"]) == 0
    text = out.read_text()
    assert "Regression: <span class=fail>REGRESSION</span>" in text
    assert "<b>style</b>: failing sites cross_attn#8, cross_attn#3" in text


def test_report_mistakes_are_one_line(tmp_path, capsys):
    (tmp_path / "empty" / "results").mkdir(parents=True)
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["loco: error: report: none of the runs has results (expected RUN_DIR/results/method=*/part-*.parquet)",
                   f"loco: error: run directory '{tmp_path / 'nope'}' does not exist"]
