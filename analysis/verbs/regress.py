"""`loco regress --baseline RUN_A --candidate RUN_B | --candidate-model PATH`: exit 0 pass, 1 regression,
2 usage error (see `analysis.regress`)."""

from __future__ import annotations

from pathlib import Path

from analysis.verbs import add_bootstrap
from harness.cli.registry import add_quiet
from harness.paths import cli_model, cli_path

HELP = "compare a new run or checkpoint with a baseline run: exit 0 pass, 1 regression"
DESCRIPTION = ("Per attribute: rank agreement (Kendall tau, Spearman) and top-k overlap over the sites with an effect, "
               "the top variant (a tie may trade places, a moved layer may not), per-site drift in effect units "
               "(Holm or BH over sites; paired only when prompts, seeds and noise match) and new failures, between a "
               "baseline run and a candidate run (or the baseline's job re-run on --candidate-model). Exit 0 = pass, "
               "1 = regression (the report names the failing sites), 2 = usage error or a run that cannot support a "
               "verdict (a constant metric, one prompt).")


def add_arguments(p) -> None:
    p.add_argument("--baseline", type=cli_path, required=True, metavar="RUN_DIR", help="the reference run")
    p.add_argument("--candidate", type=cli_path, metavar="RUN_DIR", help="the run to check")
    p.add_argument("--candidate-model", type=cli_model, metavar="PATH",
                   help="run the baseline's job on this model first")
    p.add_argument("--candidate-out", type=cli_path, metavar="DIR",
                   help="run directory for --candidate-model (default BASELINE-candidate)")
    p.add_argument("--local", action="store_true", help="run the --candidate-model sweep in this process, not on Ray")
    p.add_argument("--thresholds", metavar="FILE", help="regression file (YAML; see jobs/regression/thresholds.yaml)")
    p.add_argument("--markdown", metavar="FILE", help="write the Markdown report here (it is also printed)")
    p.add_argument("--json", metavar="FILE", help="write the JSON report here")
    add_bootstrap(p)
    add_quiet(p)
    p.add_argument("--allow-different-jobs", action="store_true",
                   help="compare runs of different jobs or model architectures (refused otherwise: their layer "
                   "rankings need not agree, so a verdict would be meaningless)")


def run(args) -> int:
    from analysis.regress import check_enough_prompts, load_thresholds, regress, run_candidate_model
    from analysis.runs import AnalysisError, open_run

    if (args.candidate is None) == (args.candidate_model is None):
        raise AnalysisError("regress: give exactly one of --candidate RUN_DIR or --candidate-model PATH")
    thresholds = load_thresholds(args.thresholds)
    baseline = open_run(args.baseline)  # a wrong baseline fails before a sweep starts
    if args.candidate_model is not None:
        check_enough_prompts(baseline)
    candidate = args.candidate or run_candidate_model(args.baseline, args.candidate_model, args.candidate_out, args.local)
    if not args.allow_different_jobs:
        check_comparable(Path(args.baseline), Path(candidate))
    verdict = regress(args.baseline, candidate, thresholds, n_boot=args.bootstrap)
    markdown = verdict.to_markdown()
    for path, text in ((args.markdown, markdown), (args.json, verdict.to_json())):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text, encoding="utf-8")
    print(markdown, end="")
    return verdict.exit_code


NOT_THE_JOB = ("name", "model", "models", "executor", "save_images", "batch_size", "seeds", "noise_seed")
# what a new checkpoint (or an A/A repeat on other seeds or noise) may change


def check_comparable(baseline: Path, candidate: Path) -> None:
    """Refuse, in one line, a candidate that ran another job (other than in its name, model and where it
    ran) or a model of another architecture: a regression check compares one job on two checkpoints."""
    import json

    import yaml

    from analysis.runs import AnalysisError

    def job(run: Path) -> dict | None:
        path = run / "job.yaml"
        return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None

    def arch(run: Path) -> str | None:
        path = run / "manifest.json"
        return (json.loads(path.read_text()).get("model") or {}).get("arch") if path.is_file() else None

    a, b = job(baseline), job(candidate)
    if a is not None and b is not None:
        differ = sorted(k for k in {*a, *b} - set(NOT_THE_JOB) if a.get(k) != b.get(k))
        if differ:
            raise AnalysisError(f"regress: '{candidate}' ran a different job than the baseline '{baseline}' (they "
                                f"differ in {', '.join(differ)}); compare runs of one job, or pass "
                                "--allow-different-jobs")
    if arch(baseline) and arch(candidate) and arch(baseline) != arch(candidate):
        raise AnalysisError(f"regress: the baseline is a {arch(baseline)} model and '{candidate}' a "
                            f"{arch(candidate)} model; their layers do not correspond (pass --allow-different-jobs "
                            "to compare anyway)")
