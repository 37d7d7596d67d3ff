"""`loco report` writes one self-contained HTML file that a real headless browser renders: no console
errors, every plot drawn, every image loaded, nothing fetched from outside, a screenshot that is not blank."""

import numpy as np
import pytest
from analysis_fixtures import make_run, swap_rows
from browser import load_page

from harness.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory, planted_run):
    root = tmp_path_factory.mktemp("report")
    real = planted_run
    trace = make_run(root, "trace", "causal_trace",
                     swap_rows(lambda i, p: 0.3 if i == 8 else 0.0, [f"p{k}" for k in range(6)], [0, 1], n_sites=16,
                               attribute="style", control=0.3, reference_role="corrupted"), n_sites=16)
    return root, real, trace


def test_the_report_renders_in_a_headless_browser(runs, tmp_path):
    root, real, trace = runs
    out = tmp_path / "report.html"
    assert main(["report", str(real), str(trace), "--out", str(out), "--bootstrap", "200"]) == 0
    text = out.read_text()
    assert "<script src=" not in text and "<link" not in text  # plotly.js is inline, not linked
    assert "Candidate layer sets" in text and "Agreement across localizers" in text and "Provenance" in text
    page = load_page(out)
    assert page["errors"] == []
    assert page["plots"] >= 5 and page["rendered"] == page["plots"]
    assert len(page["images"]) == 2 * 18 and all(page["images"])  # clean, target and 16 layers, for 2 prompts
    assert page["external"] == []
    pixels = np.asarray(page["screenshot"], dtype=np.float64)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.005  # not a blank page


def test_two_runs_of_one_method_get_the_regression_verdict(runs, tmp_path):
    root, real, trace = runs
    other = make_run(root, "trace-moved", "causal_trace",
                     swap_rows(lambda i, p: 0.3 if i == 3 else 0.0, [f"p{k}" for k in range(6)], [0, 1], n_sites=16,
                               attribute="style", control=0.3, reference_role="corrupted"), n_sites=16)
    out = tmp_path / "r.html"
    assert main(["report", str(trace), str(other), "--out", str(out), "--bootstrap", "100"]) == 0
    text = out.read_text()
    assert "Regression: <span class=fail>REGRESSION</span>" in text


def test_report_mistakes_are_one_line(tmp_path, capsys):
    (tmp_path / "empty" / "results").mkdir(parents=True)
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["loco: error: report: none of the runs has results (expected RUN_DIR/results/method=*/part-*.parquet)",
                   f"loco: error: run directory '{tmp_path / 'nope'}' does not exist"]
