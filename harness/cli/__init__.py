"""`loco`: the command-line tool.

    loco sweep [JOB.yaml] [--out DIR]    run a sweep (no job file: the embedded default on a tiny model)
    loco rank RUN_DIR [--metric M]       rank sites by effect with bootstrap CIs (DuckDB over Parquet)
    loco sites MODEL [--kind K]          print a model's site table
    loco score IMAGE... --text T         score existing images (CLIP, OCR, SSIM, ...)
    loco prompts simplebench|...         write a paper benchmark's prompt rows
    loco candidates RUN_DIR [--out F]    candidate layer sets per attribute (paper rules, cluster bootstrap)
    loco sql RUN_DIR... ["SELECT ..."]   read-only DuckDB over runs (views results, effects, rankings, ...)
    loco regress --baseline A --candidate B   regression check: exit 0 pass, 1 regression
    loco report RUN_DIR... [--out F]     one self-contained HTML report
    loco edit EDIT.yaml --out DIR        edit a model (closed form or inference time; harness/edit)
    loco edit-eval EDIT_OUT --out DIR    an edited model against its original on the same prompts
    loco finetune SPEC.yaml --out DIR    LoRA on localized (or baseline) attention layers (harness/finetune)

Each verb is one module (`HELP`, `DESCRIPTION`, `add_arguments(parser)`, `run(args) -> int`) listed by
dotted name in `harness.cli.registry.VERBS` and imported only when needed. Harness verbs live here
(`harness/cli/<verb>.py`), analysis verbs in `analysis/verbs/`: naming modules by string keeps the import
graph one-way (`analysis` → `harness`), with no cycle, while one entry point serves both.

User mistakes (a bad job key, an unknown site, a model that is not cached) end with one line on stderr
and exit status 2; a fault outside the job that stops a run (its Ray node died, the disk is full:
`harness.errors.Stopped`) with one line and exit status 3, finished work kept; Ctrl-C and SIGTERM with
one line and 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

from harness.cli.quiet import quiet
from harness.cli.registry import VERBS, build_parser, call_verb
from harness.errors import Stopped, UserError
from harness.run.signals import stop_on_sigterm

__all__ = ["VERBS", "build_parser", "call_verb", "main", "quiet"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet()
    try:
        with stop_on_sigterm():  # SIGTERM (timeout, Kubernetes, Slurm) ends a verb as Ctrl-C does
            return args.func(args)
    except UserError as exc:
        print(f"loco: error: {exc}", file=sys.stderr)
        return 2
    except Stopped as exc:  # a fault outside the job (node lost, disk full): finished work kept
        print(f"loco: stopped: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:  # a damaged file of a run (truncated part, ...): one line naming it
        better = _damaged_file(exc, args)
        if better is None:
            raise
        print(f"loco: error: {better}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loco: interrupted; finished units are kept, run the same command again to resume", file=sys.stderr)
        return 130


def _damaged_file(exc: Exception, args) -> UserError | None:
    """Whether `exc` (DuckDB's or pyarrow's, in any verb) is about a damaged file of the run(s) being read."""
    from pathlib import Path

    from harness.results.integrity import explain_read_error

    dirs = [getattr(args, "run_dir", None), *(getattr(args, "run_dirs", None) or []), getattr(args, "out", None)]
    parts = [p for d in dirs if isinstance(d, str) for p in sorted(Path(d).glob("results/**/*.parquet"))]
    return explain_read_error(exc, parts)


if __name__ == "__main__":
    sys.exit(main())
