"""`loco plan JOB.yaml`: what a sweep will run and cost, and which checkpoints it needs, without loading
a model (`harness.preflight`)."""

from __future__ import annotations

import json
from pathlib import Path

HELP = "print a job's units, generations, steps, rows, GPU-hour estimate and checkpoints; load nothing"
DESCRIPTION = ("Validate a job and print its plan: work units, generations, denoising steps, expected result "
    "rows, an estimate of GPU-hours from a per-architecture cost table (docs/methods.md §8), and each checkpoint "
    "the sweep will look for in the local cache (found or missing). No model is loaded.")


def add_arguments(parser) -> None:
    parser.add_argument("job", nargs="?", metavar="JOB", help="job YAML file (default: the embedded default job)")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                        help="override a job key (dotted keys, YAML values)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def run(args) -> int:
    from harness.jobs import DEFAULT_JOB, load_job
    from harness.preflight import format_plans, plan_models

    job = load_job(Path(args.job) if args.job else DEFAULT_JOB, overrides=args.overrides or [])
    plans = plan_models(job)
    if args.json:  # one model: the plan object, as before; several: a list, one per model
        print(json.dumps(plans[0].to_dict() if len(plans) == 1 else [p.to_dict() for p in plans], indent=2))
    else:
        print(format_plans(plans))
    return 0
