"""`loco report RUN_DIR... [EDIT_EVAL_DIR...] [--out FILE]`: one self-contained HTML file a reviewer can open offline.

The file holds plotly.js inline (no CDN: the reader may be offline) and every image as a data URI.
Sections: provenance of each run; per run, the heatmap of effect by layer and attribute, the effect
vs layer curves with their cluster-bootstrap bands (the papers' figures: P2's window curves, P3's
layer heatmap, P1's restored-score bars and text-encoder grid for causal tracing); image grids
(`analysis.report_images`: for causal tracing clean / corrupted / restored at the top states, for the
other methods the clean, target and each variant's image) when the run saved images; the candidate
sets (with a run column when there are several runs, the prompts behind each interval, and why a set
is empty); agreement across localizers where two methods ranked at least two common sites (left out
otherwise); the edit of a `loco edit-eval` directory given among the paths (its efficacy / generalization
/ specificity table and before/after images); and, given two runs of one method, the regression verdict
of `loco regress` naming the failing sites.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

from analysis.agreement import TOP_K, agreement_table
from analysis.candidates import group_to_set
from analysis.choose import corruption_text
from analysis.effects import GroupRanking, rank_run
from analysis.intervals import N_BOOT, interval_text, p_top_text
from analysis.report_figures import attribute_heatmap, effect_curve, trace_bars, trace_text_grid
from analysis.report_images import edit_grid, sweep_grid, trace_grid
from analysis.runs import AnalysisError, Run, open_runs
from harness.results import provenance

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}
th{background:#f3f3f3}.grid{display:flex;flex-wrap:wrap;gap:6px}.grid figure{margin:0;text-align:center;font-size:11px}
.grid img{width:128px;height:128px;image-rendering:pixelated;border:1px solid #ccc}.warn{color:#a40}
.pass{color:#070;font-weight:bold}.fail{color:#b00;font-weight:bold}"""
PROVENANCE_KEYS = ("job_name", "method", "status", "job_fingerprint", "started_at", "finished_at", "seconds",
                   "rows_written", "backend", "harness_version", "git_commit", "torch_version", "diffusers_version",
                   "transformers_version", "python_version")


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def provenance_html(run: Run) -> str:
    m = run.manifest
    rows = [["run directory", str(run.path)], ["model", run.model_id], ["model fingerprint", run.model_fingerprint],
            ["arch", run.model.get("arch")]]
    rows += [[k, m.get(k)] for k in PROVENANCE_KEYS if k in m]
    return _table(["", run.name], rows)


def site_order(run: Run) -> list[str]:
    if not run.sites_csv.is_file():
        return []
    with open(run.sites_csv, newline="") as handle:
        return [r["name"] for r in csv.DictReader(handle)]


def candidates_html(groups: list[GroupRanking], with_run: bool = False) -> str:
    rows = []
    for g in groups:
        s = group_to_set(g)
        top = s.evidence[0] if s.evidence else {}
        why = "" if s.sites else s.status
        rows.append(([g.run] if with_run else []) + [
            s.attribute, s.concept, s.method, s.indices or f"none ({why})", s.metric, top.get("effect"),
            interval_text(top.get("ci_low"), top.get("ci_high"), top.get("n_prompts", 0)), p_top_text(top.get("p_top")),
            "yes" if s.separated else "NO", s.warning or ""])
    header = ["attribute", "concept", "method", "layers", "metric", "effect of the first", "95% CI, prompts", "P(top)",
              "separated", "warning"]
    return _table((["run"] if with_run else []) + header, rows)


def agreement_html(groups: list[GroupRanking], runs: list[Run]) -> str:
    """The agreement table (`analysis.agreement`), only for pairs of runs that ordered at least two common sites
    (τ needs two): per attribute and concept, on the prompts both runs hold."""
    rows = [[a.attribute, a.concept or "(all)", a.run_a, a.method_a, a.run_b, a.method_b, a.n_prompts, a.n_sites,
             a.kendall_tau, f"{a.top_k_overlap} of {a.k}", a.top_a, a.top_b]
            for a in agreement_table(groups, runs) if a.kendall_tau is not None]
    if not rows:
        return ""
    return "<h2>Agreement across localizers</h2>" + _table(
        ["attribute", "concept", "run A", "method A", "run B", "method B", "common prompts", "common sites",
         "Kendall τ", f"top-{TOP_K} overlap", "top A", "top B"], rows)


def regression_html(a: Run, b: Run, n_boot: int) -> str:
    from analysis.regress import Thresholds, regress

    verdict = regress(a.path, b.path, Thresholds(), n_boot=n_boot)
    word = "PASS" if verdict.passed else "REGRESSION"
    rows = [[c.group or "(run)", c.name, c.value, c.limit, "ok" if c.passed else "FAIL"] for c in verdict.checks]
    failing = "".join(f"<li><b>{html.escape(group)}</b>: failing sites {html.escape(', '.join(sites))}</li>"
                      for group, sites in verdict.failing_sites.items())
    drift = [[g.group, d["variant"], d["baseline"], d["candidate"], d["drift"], f"[{d['ci_low']:.4g}, {d['ci_high']:.4g}]",
              d["p_adjusted"], d["interval"]] for g in verdict.groups for d in g.drifting]
    return (f"<h2>Regression: <span class={'pass' if verdict.passed else 'fail'}>{word}</span></h2>"
            f"<p>baseline {html.escape(a.name)} · candidate {html.escape(b.name)} (default thresholds)</p>"
            + (f"<ul class=fail>{failing}</ul>" if failing else "")
            + _table(["group", "check", "value", "limit", ""], rows)
            + (_table(["group", "drifting site", "baseline", "candidate", "drift", "95% CI", "adjusted p", "interval"],
                      drift) if drift else ""))


def is_edit_eval(path: str | Path) -> bool:
    """A `loco edit-eval` output directory (summary.json + results.parquet), not a sweep's run directory."""
    path = Path(path)
    return (path / "summary.json").is_file() and (path / "results.parquet").is_file() and \
        not (path / "manifest.json").is_file()


def edit_html(edit_eval: Path) -> str:
    """The edit's efficacy / generalization / specificity table (original → edited) and its before/after grid."""
    summary = json.loads((edit_eval / "summary.json").read_text(encoding="utf-8"))
    sets = summary.get("sets", {})
    scored = sorted({k.removesuffix("_original") for s in sets.values() for k in s if k.endswith("_original")})
    header = ["prompt set", "rows", "mse to original", "ssim to original"] + [f"{k} (original → edited)" for k in scored]
    rows = [[name, s.get("rows"), s.get("mse"), s.get("ssim")]
            + [f"{s[k + '_original']:.3g} → {s[k]:.3g}" if k in s and k + "_original" in s else "" for k in scored]
            for name, s in sets.items()]
    return (f"<h2>Edit {html.escape(str(summary.get('edit_id', '')))} ({html.escape(edit_eval.name)})</h2>"
            "<p>efficacy: the prompts it was fitted on (should move); generalization: other prompts with the concept "
            "(should move); specificity: other concepts (should stay).</p>" + _table(header, rows) + edit_grid(edit_eval))


class Figures:
    """Collects plotly figures as <div>s; plotly.js is added once for the whole page."""

    def __init__(self):
        self.count = 0

    def html(self, fig) -> str:
        if fig is None:
            return ""
        self.count += 1
        return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig{self.count}",
                           config={"displaylogo": False, "responsive": True})


def run_html(run: Run, figures: Figures, n_boot: int, n_prompts: int) -> tuple[str, list[GroupRanking]]:
    """One run's section (figures, warnings, images) and its ranked groups."""
    parts = [f"<h2>{html.escape(run.name)} · {html.escape(run.method or '')}</h2>"]
    if not run.has_results:
        return parts[0] + "<p class=warn>no results in this run</p>", []
    try:
        groups = rank_run(run, n_boot=n_boot)
    except AnalysisError as exc:  # e.g. a metric that is constant over the rows: nothing to rank
        return parts[0] + f"<p class=warn>not ranked: {html.escape(str(exc))}</p>", []
    parts.append(figures.html(attribute_heatmap(groups)))
    for g in (g for g in groups if not g.concept):
        if g.method == "causal_trace":
            parts.append(figures.html(trace_bars(g, site_order(run))))
            parts.append(figures.html(trace_text_grid(g)))
            if g.corruption:  # restores can only bring back what the corruption took away
                worked = "worked" if g.corruption["effective"] else "ineffective"
                parts.append(f"<p class={'pass' if g.corruption['effective'] else 'fail'}>{html.escape(g.label)}: "
                             f"corruption {worked} ({html.escape(corruption_text(g.corruption))})</p>")
        parts.append(figures.html(effect_curve(g)))
        if g.warning:
            parts.append(f"<p class=warn>{html.escape(g.label)}: {html.escape(g.warning)}</p>")
    parts.append(trace_grid(run, groups, n_prompts) if run.method == "causal_trace" else sweep_grid(run, n_prompts))
    return "".join(parts), groups


def build_report(paths, n_boot: int = N_BOOT, n_prompts: int = 2) -> str:
    import plotly.offline

    edits = [Path(p) for p in paths if is_edit_eval(p)]
    runs = open_runs([p for p in paths if not is_edit_eval(p)]) if len(edits) < len(paths) else []
    if not any(r.has_results for r in runs):
        raise AnalysisError("report: none of the runs has results (expected RUN_DIR/results/method=*/part-*.parquet)")
    figures, body, all_groups = Figures(), [], []
    body.append("<h2>Provenance</h2>" + "".join(provenance_html(r) for r in runs))
    for run in runs:
        text, groups = run_html(run, figures, n_boot, n_prompts)
        body.append(text)
        all_groups += groups
    body.append("<h2>Candidate layer sets</h2>" + candidates_html(all_groups, with_run=len(runs) > 1))
    body.append(agreement_html(all_groups, runs))
    body += [edit_html(e) for e in edits]
    with_results = [r for r in runs if r.has_results]
    if len(with_results) == 2 and with_results[0].method == with_results[1].method:
        try:
            body.append(regression_html(with_results[0], with_results[1], n_boot))
        except AnalysisError as exc:
            body.append(f"<h2>Regression</h2><p class=warn>no verdict: {html.escape(str(exc))}</p>")
    title = "loco report: " + ", ".join([r.name for r in runs] + [e.name for e in edits])
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style><script>{plotly.offline.get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(title)}</h1><p>generated {provenance.now()}</p>{''.join(body)}</body></html>")


def write_report(paths, out: str | Path | None = None, n_boot: int = N_BOOT) -> Path:
    text = build_report(paths, n_boot)
    out = Path(out) if out else Path(paths[0]) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
