"""The analysis verbs of `loco`: candidates, sql, regress, report (registered by `harness.cli`).

Each `cmd_*` takes the parsed arguments and returns the exit status; a user mistake raises a
`UserError`, which the CLI prints as one line with exit status 2.
"""

from __future__ import annotations

import sys


def cmd_candidates(args) -> int:
    from analysis.candidates import build_candidates, dump_candidates
    from analysis.effects import format_groups, rank_run
    from analysis.runs import open_runs

    runs = open_runs(args.run_dirs)
    groups = [g for run in runs for g in rank_run(run, args.metric, args.bootstrap)] if runs[0].has_results else None
    candidates = build_candidates(args.run_dirs, args.metric, args.top, args.bootstrap, groups=groups)
    if args.minimal_set:
        from analysis.minimal_set import find_minimal_sets

        candidates = find_minimal_sets(candidates, runs, fraction=args.fraction, max_size=args.max_size,
                                       out=args.minimal_out, local=args.local, n_boot=args.bootstrap)
    text = dump_candidates(candidates, args.out)
    if args.out:
        print(format_groups(groups, top=5), file=sys.stderr)
        print(f"wrote {len(candidates.sets)} candidate sets to {args.out}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def cmd_sql(args) -> int:
    from analysis.query import run_query, shell

    if args.query is None:
        return shell(args.run_dirs)
    text = run_query(args.run_dirs, args.query, args.format, args.out)
    if text:
        print(text, end="" if text.endswith("\n") else "\n")
    return 0


def cmd_regress(args) -> int:
    from pathlib import Path

    from analysis.regress import load_thresholds, regress, run_candidate_model
    from analysis.runs import AnalysisError, open_run

    if (args.candidate is None) == (args.candidate_model is None):
        raise AnalysisError("regress: give exactly one of --candidate RUN_DIR or --candidate-model PATH")
    thresholds = load_thresholds(args.thresholds)
    open_run(args.baseline)  # a wrong baseline fails before a sweep starts
    candidate = args.candidate or run_candidate_model(args.baseline, args.candidate_model, args.candidate_out, args.local)
    verdict = regress(args.baseline, candidate, thresholds, n_boot=args.bootstrap)
    markdown = verdict.to_markdown()
    for path, text in ((args.markdown, markdown), (args.json, verdict.to_json())):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text, encoding="utf-8")
    print(markdown, end="")
    return verdict.exit_code


def cmd_report(args) -> int:
    from analysis.report import write_report

    out = write_report(args.run_dirs, args.out, n_boot=args.bootstrap)
    print(f"wrote {out}")
    return 0


def register(sub) -> None:
    """Add the analysis verbs to the `loco` subcommand parser."""
    p = sub.add_parser("candidates", help="candidate layer sets per attribute and concept, with evidence",
                       description="Rank each attribute (and concept) of the runs under the paper's selection rule "
                       "(LocoGen: CLIP to the original prompt, lowest, for style/object; to the target, highest, for "
                       "facts; P3: OCR F1 to the target text; causal tracing: a threshold chosen on held-out prompts) "
                       "with cluster-bootstrap intervals, and write the layer sets `loco edit` takes.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories of one model")
    p.add_argument("--out", help="file to write (.yaml, or .json for JSON); default: print YAML")
    p.add_argument("--metric", help="rank by this column instead of the paper's metric")
    p.add_argument("--top", type=int, default=1, help="variants per set for top-k rules (default 1)")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap resamples (default 2000)")
    p.add_argument("--minimal-set", action="store_true",
                   help="also find the smallest layer set reaching --fraction of the all-layer effect, verified by a "
                   "follow-up sweep the harness runs itself")
    p.add_argument("--fraction", type=float, default=0.9, help="share of the all-layer effect to reach (default 0.9)")
    p.add_argument("--max-size", type=int, default=8, help="largest set the minimal-set sweep tries (default 8)")
    p.add_argument("--minimal-out", help="run directory of the follow-up sweep (default: RUN_DIR-minimal)")
    p.add_argument("--local", action="store_true", help="run the follow-up sweep in this process instead of on Ray")
    p.set_defaults(func=cmd_candidates)

    p = sub.add_parser("sql", help="read-only SQL (DuckDB) over runs: results, sites, effects, rankings, ...",
                       description="Query one or many run directories with DuckDB. Views: results, sites, effects, "
                       "rankings, candidates, failures. Without a query: an interactive prompt.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("query", nargs="?", help="a SELECT statement (the last argument; omit it for the prompt)")
    p.add_argument("--format", default="table", help="table (default), csv, json or parquet")
    p.add_argument("--out", help="write the result to this file (required for parquet)")
    p.set_defaults(func=cmd_sql, split_query=True)

    p = sub.add_parser("regress", help="compare a new run or checkpoint with a baseline run: exit 0 pass, 1 regression",
                       description="Rank agreement (Kendall tau, Spearman), candidate-set overlap, per-site effect "
                       "drift with intervals and new failures between a baseline run and a candidate run (or the "
                       "baseline's job re-run on --candidate-model). Exit 0 = pass, 1 = regression, 2 = usage error.")
    p.add_argument("--baseline", required=True, metavar="RUN_DIR", help="the reference run")
    p.add_argument("--candidate", metavar="RUN_DIR", help="the run to check")
    p.add_argument("--candidate-model", metavar="PATH", help="run the baseline's job on this model first")
    p.add_argument("--candidate-out", metavar="DIR", help="run directory for --candidate-model (default BASELINE-candidate)")
    p.add_argument("--local", action="store_true", help="run the --candidate-model sweep in this process, not on Ray")
    p.add_argument("--thresholds", metavar="FILE", help="regression file (YAML; see jobs/regression.yaml)")
    p.add_argument("--markdown", metavar="FILE", help="write the Markdown report here (it is also printed)")
    p.add_argument("--json", metavar="FILE", help="write the JSON report here")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    p.set_defaults(func=cmd_regress)

    p = sub.add_parser("report", help="one self-contained HTML report of runs (plots, images, candidates, verdict)",
                       description="Heatmaps and effect-vs-layer curves with interval bands, the papers' figures, "
                       "image grids (with save_images), candidate sets, agreement, the regression verdict for two "
                       "runs of one method, and provenance, in one HTML file that opens offline.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", help="HTML file to write (default: RUN_DIR/report.html of the first run)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    p.set_defaults(func=cmd_report)


def split_query_arg(args) -> None:
    """`loco sql RUN... QUERY`: argparse cannot tell the last positional from a run directory; a final argument
    that looks like SQL (has a space or starts with a keyword) is the query."""
    if getattr(args, "split_query", False) and args.query is None and len(args.run_dirs) > 1:
        last = args.run_dirs[-1]
        if " " in last.strip() or last.strip().upper().startswith(("SELECT", "WITH", "DESCRIBE", "SHOW", "FROM")):
            args.query = args.run_dirs.pop()
