"""`loco rank RUN_DIR`: rank sites by effect with bootstrap confidence intervals (see `analysis.rank`)."""

from __future__ import annotations

from harness.cli.registry import add_bootstrap

HELP = "rank sites by effect with bootstrap confidence intervals"
DESCRIPTION = ("Mean effect per site (or window) over prompts × seeds, with a percentile bootstrap CI, computed "
    "with DuckDB over the run's Parquet files.")


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `loco sweep`")
    parser.add_argument("--metric", help="metric column (default: the method's paper metric if present, else mse, "
                        "else the first metric column)")
    parser.add_argument("--order", choices=("asc", "desc"), help="override the sort (default: by effect direction)")
    parser.add_argument("--top", type=int, help="show only the first N sites")
    parser.add_argument("--aggregate", choices=("mean", "f1_of_means"),
                        help="per-site statistic (default: f1_of_means for OCR F1 columns, as P3; else mean)")
    add_bootstrap(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON list of {site, rank, mean, ci_low, ci_high, n, ...}")
    parser.add_argument("--by-attribute", action="store_true",
                        help="one ranking per attribute (and concept) under the paper's rule, with paired effects, "
                        "cluster-bootstrap CIs and P(top), as `loco candidates` uses")


def run(args) -> int:
    from analysis.rank import format_ranking, rank

    if args.by_attribute:
        import json

        from analysis.effects import format_groups, rank_run
        from analysis.runs import open_run

        groups = rank_run(open_run(args.run_dir), args.metric, args.bootstrap)
        print(json.dumps([r for g in groups for r in g.records()], indent=2) if args.json
              else format_groups(groups, top=args.top))
        return 0

    ranking = rank(args.run_dir, metric=args.metric, order=args.order, n_boot=args.bootstrap,
                   aggregate=args.aggregate)
    print(ranking.to_json() if args.json else format_ranking(ranking, top=args.top))
    return 0
