"""`loco rank RUN_DIR`: each attribute ranked under its paper's rule, or `--pooled` one table (see `analysis.rank`)."""

from __future__ import annotations

from analysis.verbs import add_bootstrap

HELP = "rank sites per attribute under the paper's rule, with intervals over prompts and P(top)"
DESCRIPTION = ("Each attribute (and concept) of a run ranked under its paper's rule: paired effects with "
               "cluster-bootstrap intervals over prompts (n beside each), P(top), and `*` on the candidate set. "
               "--pooled: one table of a metric's mean per variant over every row. A metric that is constant over "
               "the rows is refused.")


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `loco sweep`")
    parser.add_argument("--metric", help="metric column (default: the paper's metric for each attribute — CLIP to the "
                        "prompt for style/object, to the target for facts, OCR F1 for text — or the toyworld probes' "
                        "analog, else mse)")
    parser.add_argument("--top", type=int, help="show only the first N variants of each table")
    add_bootstrap(parser)
    parser.add_argument("--json", action="store_true", help="print JSON records instead of the tables")
    parser.add_argument("--no-concepts", action="store_true",
                        help="one table per attribute, without the tables of each concept")
    parser.add_argument("--pooled", action="store_true",
                        help="one table over every row (all attributes pooled): the mean of --metric per variant")
    parser.add_argument("--order", choices=("asc", "desc"), help="--pooled: override the sort (default: by effect direction)")
    parser.add_argument("--aggregate", choices=("mean", "f1_of_means"),
                        help="--pooled: per-variant statistic (default: f1_of_means for OCR F1 columns, as P3; else mean)")
    parser.add_argument("--by-attribute", action="store_true", help="the default since per-attribute ranking became "
                        "it; kept so older scripts run")


def run(args) -> int:
    from analysis.runs import AnalysisError

    if args.bootstrap < 1:
        raise AnalysisError(f"--bootstrap: expected at least 1 resample, got {args.bootstrap}")
    if not args.pooled and (args.order or args.aggregate):
        raise AnalysisError(f"--{'order' if args.order else 'aggregate'}: only with --pooled (per attribute, the "
                            "paper's rule sets the direction and the statistic)")
    if args.pooled:
        from analysis.rank import format_ranking, rank

        ranking = rank(args.run_dir, metric=args.metric, order=args.order, n_boot=args.bootstrap,
                       aggregate=args.aggregate)
        print(ranking.to_json() if args.json else format_ranking(ranking, top=args.top))
        return 0
    import json

    from analysis.effects import rank_run
    from analysis.rank import format_groups
    from analysis.runs import open_run

    groups = rank_run(open_run(args.run_dir), args.metric, args.bootstrap, by_concept=not args.no_concepts)
    print(json.dumps([r for g in groups for r in g.records()], indent=2) if args.json
          else format_groups(groups, top=args.top))
    return 0
