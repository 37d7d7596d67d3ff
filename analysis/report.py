"""`loco report RUN_DIR... [--out FILE]`: one self-contained HTML file a reviewer can open offline.

The file holds plotly.js inline (no CDN: the reader may be offline) and every image as a data URI.
Sections: provenance of each run; per run, the heatmap of effect by layer and attribute, the effect
vs layer curves with their cluster-bootstrap bands (the papers' figures: P2's window curves, P3's
layer heatmap, P1's restored-score bars and text-encoder grid for causal tracing); image grids (the
clean image, the corrupted or target image, and each variant's image) for the first prompts when the
run saved images; the candidate sets; agreement across localizers; and, given two runs of one
method, the regression verdict of `loco regress`.
"""

from __future__ import annotations

import base64
import csv
import html
from pathlib import Path

import duckdb

from analysis.agreement import agreement_table
from analysis.candidates import group_to_set
from analysis.effects import GroupRanking, rank_run
from analysis.intervals import N_BOOT
from analysis.report_figures import attribute_heatmap, effect_curve, trace_bars, trace_text_grid
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


def image_grid(run: Run, groups: list[GroupRanking], n_prompts: int = 2, max_variants: int = 24) -> str:
    """Clean, corrupted/target and each variant's image for the first prompts (first seed) of the run."""
    if not (run.path / "images").is_dir():
        return ""
    rows = duckdb.connect().execute(
        "SELECT prompt_id, any_value(prompt), role, variant, unit_id, row_id, image_path, site_index, seed "
        "FROM read_parquet($g, hive_partitioning = true, union_by_name = true) "
        "WHERE seed = (SELECT min(seed) FROM read_parquet($g, hive_partitioning = true, union_by_name = true)) "
        "GROUP BY ALL ORDER BY prompt_id", {"g": run.results_glob}).fetchall()
    prompts = list(dict.fromkeys(r[0] for r in rows))[:n_prompts]
    role_order = {"control": 0, "target": 1, "corrupted": 1, "variant": 2}
    parts = []
    for pid in prompts:
        mine = sorted((r for r in rows if r[0] == pid), key=lambda r: (role_order.get(r[2], 3), r[7] or 0, r[3]))
        figures = []
        for _, _, role, variant, unit_id, row_id, image_path, *_ in mine[: max_variants + 2]:
            path = run.path / (image_path or f"images/{unit_id}/{row_id}.png")
            if path.is_file():
                data = base64.b64encode(path.read_bytes()).decode()
                label = "clean" if role == "control" else (role if role != "variant" else variant)
                figures.append(f'<figure><img alt="{html.escape(label)}" src="data:image/png;base64,{data}">'
                               f"<figcaption>{html.escape(label)}</figcaption></figure>")
        if figures:
            prompt = next(r[1] for r in mine)
            parts.append(f"<h4>{html.escape(pid)}: “{html.escape(prompt or '')}”</h4><div class=grid>{''.join(figures)}</div>")
    return "<h3>Images</h3>" + "".join(parts) if parts else ""


def candidates_html(groups: list[GroupRanking]) -> str:
    rows = []
    for g in groups:
        s = group_to_set(g)
        top = s.evidence[0] if s.evidence else {}
        rows.append([s.attribute, s.concept, s.method, s.indices, s.metric, top.get("effect"),
                     f"[{_fmt(top.get('ci_low'))}, {_fmt(top.get('ci_high'))}]", top.get("p_top"),
                     "yes" if s.separated else "NO", s.warning or ""])
    return _table(["attribute", "concept", "method", "layers", "metric", "effect", "95% CI", "P(top)", "separated",
                   "warning"], rows)


def regression_html(a: Run, b: Run, n_boot: int) -> str:
    from analysis.regress import Thresholds, regress

    verdict = regress(a.path, b.path, Thresholds(), n_boot=n_boot)
    word = "PASS" if verdict.passed else "REGRESSION"
    rows = [[c.group or "(run)", c.name, c.value, c.limit, "ok" if c.passed else "FAIL"] for c in verdict.checks]
    return (f"<h2>Regression: <span class={'pass' if verdict.passed else 'fail'}>{word}</span></h2>"
            f"<p>baseline {html.escape(a.name)} · candidate {html.escape(b.name)} (default thresholds)</p>"
            + _table(["group", "check", "value", "limit", ""], rows))


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


def build_report(paths, n_boot: int = N_BOOT, n_prompts: int = 2) -> str:
    import plotly.offline

    runs = open_runs(paths)
    if not any(r.has_results for r in runs):
        raise AnalysisError("report: none of the runs has results (expected RUN_DIR/results/method=*/part-*.parquet)")
    figures, body, all_groups = Figures(), [], []
    body.append("<h2>Provenance</h2>" + "".join(provenance_html(r) for r in runs))
    for run in runs:
        body.append(f"<h2>{html.escape(run.name)} · {html.escape(run.method or '')}</h2>")
        if not run.has_results:
            body.append("<p class=warn>no results in this run</p>")
            continue
        groups = rank_run(run, n_boot=n_boot)
        all_groups += groups
        pooled = [g for g in groups if not g.concept]
        body.append(figures.html(attribute_heatmap(groups)))
        for g in pooled:
            if g.method == "causal_trace":
                body.append(figures.html(trace_bars(g, site_order(run))))
                body.append(figures.html(trace_text_grid(g)))
            body.append(figures.html(effect_curve(g)))
            if g.warning:
                body.append(f"<p class=warn>{html.escape(g.label)}: {html.escape(g.warning)}</p>")
        body.append(image_grid(run, groups, n_prompts))
    body.append("<h2>Candidate layer sets</h2>" + candidates_html(all_groups))
    agreement = agreement_table(all_groups)
    if agreement:
        body.append("<h2>Agreement across localizers</h2>" + _table(
            ["attribute", "run A", "method A", "run B", "method B", "common sites", "Kendall τ", "Spearman", "top-k overlap"],
            [[a.attribute, a.run_a, a.method_a, a.run_b, a.method_b, a.n_common, a.kendall_tau, a.spearman, a.top_k_overlap]
             for a in agreement]))
    with_results = [r for r in runs if r.has_results]
    if len(with_results) == 2 and with_results[0].method == with_results[1].method:
        body.append(regression_html(with_results[0], with_results[1], n_boot))
    title = "loco report: " + ", ".join(r.name for r in runs)
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style><script>{plotly.offline.get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(title)}</h1><p>generated {provenance.now()}</p>{''.join(body)}</body></html>")


def write_report(paths, out: str | Path | None = None, n_boot: int = N_BOOT) -> Path:
    text = build_report(paths, n_boot)
    out = Path(out) if out else Path(paths[0]) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
