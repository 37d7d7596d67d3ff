"""`loco regress --baseline RUN_A --candidate RUN_B | --candidate-model PATH`: exit 0 pass, 1 regression,
2 usage error (see `analysis.regress`)."""

from __future__ import annotations

from pathlib import Path

from analysis.intervals import N_BOOT

HELP = "compare a new run or checkpoint with a baseline run: exit 0 pass, 1 regression"
DESCRIPTION = ("Per attribute: rank agreement (Kendall tau, Spearman) and top-k overlap over the sites with an effect, "
               "the top variant (a tie may trade places, a moved layer may not), per-site drift in effect units "
               "(Holm or BH over sites; paired only when prompts, seeds and noise match) and new failures, between a "
               "baseline run and a candidate run (or the baseline's job re-run on --candidate-model). Exit 0 = pass, "
               "1 = regression (the report names the failing sites), 2 = usage error or a run that cannot support a "
               "verdict (a constant metric, one prompt).")


def add_arguments(p) -> None:
    p.add_argument("--baseline", required=True, metavar="RUN_DIR", help="the reference run")
    p.add_argument("--candidate", metavar="RUN_DIR", help="the run to check")
    p.add_argument("--candidate-model", metavar="PATH", help="run the baseline's job on this model first")
    p.add_argument("--candidate-out", metavar="DIR", help="run directory for --candidate-model (default BASELINE-candidate)")
    p.add_argument("--local", action="store_true", help="run the --candidate-model sweep in this process, not on Ray")
    p.add_argument("--thresholds", metavar="FILE", help="regression file (YAML; see jobs/regression/thresholds.yaml)")
    p.add_argument("--markdown", metavar="FILE", help="write the Markdown report here (it is also printed)")
    p.add_argument("--json", metavar="FILE", help="write the JSON report here")
    p.add_argument("--bootstrap", type=int, default=N_BOOT, metavar="N",
                   help=f"bootstrap resamples (default {N_BOOT}, as every verb)")


def run(args) -> int:
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
