"""`loco sweep [JOB.yaml]`: run a sweep (no job file: the embedded default on a tiny model), then
print the top of its ranking."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.cli.registry import add_quiet, call_verb
from harness.errors import UserError
from harness.paths import cli_path

HELP = "run an intervention sweep and write per-row results to Parquet"
DESCRIPTION = ("Run the sweep a job file describes (without one: the embedded default, a LocoGen sweep on the "
    "built-in tiny SD1.x model). Finished units are kept: running the same job into the same --out "
    "resumes it.")


def add_arguments(parser) -> None:
    parser.add_argument("job", nargs="?", metavar="JOB", help="job YAML file (default: the embedded default job)")
    parser.add_argument("--out", type=cli_path, help="run directory (default: runs/<job name>)")
    parser.add_argument("--force", action="store_true", help="replace a run directory that holds another job")
    parser.add_argument("--local", action="store_true", help="run in this process instead of on Ray")
    parser.add_argument("--address", help="join this Ray cluster (`auto`: the one started on this node with "
                        "`ray start`/`ray up`; default: executor.address, else RAY_ADDRESS, else a private "
                        "Ray started and stopped here)")
    add_quiet(parser)
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                        help="override a job key (dotted keys, YAML values), e.g. --set model=tiny:sdxl")
    parser.add_argument("--dry-run", action="store_true", help="validate the job and print the plan; generate nothing")


def run(args) -> int:
    from harness.jobs import DEFAULT_JOB, load_job
    from harness.sweep import run_sweep

    overrides = [*(args.overrides or []), *([f"executor.address={args.address}"] if args.address else [])]
    job = load_job(Path(args.job) if args.job else DEFAULT_JOB, overrides=overrides)
    if args.dry_run:
        return _dry_run(job)
    backend = "local" if args.local else None
    if job.multi_model:
        return _multi(job, args, backend)
    summary = run_sweep(job, out=args.out, force=args.force, backend=backend, quiet=args.quiet)
    repaired = f", {summary.units_repaired} damaged parts re-run" if summary.units_repaired else ""
    print(f"{job.name}: {summary.rows_written} rows from {summary.units_run - summary.units_failed} units "
          f"({summary.units_skipped} already done{repaired}) in {summary.seconds:.1f} s → {summary.run_dir}")
    if summary.failures:
        first = summary.failures[0]
        print(f"loco: {summary.units_failed} of {summary.units_total} units failed (first: unit {first.unit_id} after "
              f"{first.attempts} attempts: {first.error}); see {summary.run_dir / 'failures.parquet'}; run the same "
              "command again to retry only those", file=sys.stderr)
        return 1
    try:  # through the verb registry: harness does not import analysis (see harness.cli)
        call_verb("rank", [str(summary.run_dir), "--top", "5", "--no-concepts"])  # per attribute, the paper's rule
    except UserError as exc:  # the sweep itself succeeded; say why there is no table
        print(f"no ranking: {exc}")
        return 0
    print(f"full ranking: loco rank {summary.run_dir}")
    return 0


def _multi(job, args, backend) -> int:
    """A multi-model sweep: one summary line per model's run directory; exit 1 when any unit failed."""
    from harness.multisweep import run_multi_sweep

    summaries = run_multi_sweep(job, out=args.out, force=args.force, backend=backend, quiet=args.quiet)
    for s in summaries:
        failed = f", {s.units_failed} failed (see {s.run_dir / 'failures.parquet'})" if s.failures else ""
        print(f"{job.name} [{s.model}]: {s.rows_written} rows from {s.units_run - s.units_failed} units "
              f"({s.units_skipped} already done{failed}) in {s.seconds:.1f} s → {s.run_dir}")
    print(f"rank each model: loco rank {summaries[0].run_dir.parent}/<model dir>")
    if any(s.failures for s in summaries):
        print(f"loco: {sum(s.units_failed for s in summaries)} units failed; run the same command again to "
              "retry only those", file=sys.stderr)
        return 1
    return 0


def _dry_run(job) -> int:
    """The plan `loco plan` prints: counts, GPU-hour estimate and checkpoints, without loading a model."""
    from harness.preflight import format_plans, plan_models

    print(format_plans(plan_models(job)))
    return 0
