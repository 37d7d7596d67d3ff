"""`loco candidates RUN_DIR... [--out FILE]`: candidate layer sets per attribute and concept (see
`analysis.candidates`; `--minimal-set`: `analysis.minimal_set`)."""

from __future__ import annotations

import sys

from analysis.verbs import add_bootstrap
from harness.cli.registry import add_quiet

HELP = "candidate layer sets per attribute and concept, with evidence"
DESCRIPTION = ("Rank each attribute (and concept) of the runs under the paper's selection rule (LocoGen: CLIP to "
               "the original prompt, lowest, for style/object; to the target, highest, for facts; P3: OCR F1 to the "
               "target text; causal tracing: a threshold chosen on held-out prompts) with cluster-bootstrap "
               "intervals, and write the layer sets `loco edit` takes.")


def add_arguments(p) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories of one model")
    p.add_argument("--out", help="file to write (.yaml, or .json for JSON); default: print YAML")
    p.add_argument("--metric", help="rank by this column instead of the paper's metric")
    p.add_argument("--top", type=int, help="variants per set for top-k rules (default: the paper's: P2 1 window, "
                   "P3 3 layers on SDXL, 1 on IF/SD3); only variants whose interval excludes 0 enter a set")
    add_bootstrap(p)
    p.add_argument("--minimal-set", action="store_true",
                   help="also find the smallest layer set reaching --fraction of the all-layer effect, verified by a "
                   "follow-up sweep the harness runs itself")
    p.add_argument("--fraction", type=float, default=0.9, help="share of the all-layer effect to reach (default 0.9)")
    p.add_argument("--max-size", type=int, default=8, help="largest set the minimal-set sweep tries (default 8)")
    p.add_argument("--minimal-out", help="run directory of the follow-up sweep (default: RUN_DIR-minimal)")
    p.add_argument("--local", action="store_true", help="run the follow-up sweep in this process instead of on Ray")
    add_quiet(p)


def run(args) -> int:
    from analysis.candidates import build_candidates, dump_candidates
    from analysis.effects import rank_run
    from analysis.rank import format_groups
    from analysis.runs import AnalysisError, open_runs, require_results

    runs = open_runs(args.run_dirs)
    for r in runs:
        require_results(r)
    if args.bootstrap < 1:
        raise AnalysisError(f"--bootstrap: expected at least 1 resample, got {args.bootstrap}")
    if args.top is not None and args.top < 1:
        raise AnalysisError(f"--top: expected at least 1 variant per set, got {args.top}")
    groups = [g for r in runs for g in rank_run(r, args.metric, args.bootstrap, top=args.top)]
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
