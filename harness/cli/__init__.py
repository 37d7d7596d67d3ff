"""`loco`: the command-line tool.

    loco sweep [JOB.yaml] [--out DIR]    run a sweep (no job file: the embedded default on a tiny model)
    loco rank RUN_DIR [--metric M]       rank sites by effect with bootstrap CIs (DuckDB over Parquet)
    loco sites MODEL [--kind K]          print a model's site table
    loco score IMAGE... --text T         score existing images (CLIP, OCR, SSIM, ...)
    loco prompts simplebench|...         write a paper benchmark's prompt rows

Each verb is one module (`HELP`, `DESCRIPTION`, `add_arguments(parser)`, `run(args) -> int`) listed by
dotted name in `harness.cli.registry.VERBS` and imported only when needed. Harness verbs live here
(`harness/cli/<verb>.py`), analysis verbs in `analysis/verbs/`: naming modules by string keeps the import
graph one-way (`analysis` → `harness`), with no cycle, while one entry point serves both.

User mistakes (a bad job key, an unknown site, a model that is not cached) end with one line on stderr
and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

from harness.cli.quiet import quiet
from harness.cli.registry import VERBS, build_parser, call_verb
from harness.errors import UserError

__all__ = ["VERBS", "build_parser", "call_verb", "main", "quiet"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet()
    try:
        return args.func(args)
    except UserError as exc:
        print(f"loco: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loco: interrupted; finished units are kept, run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
