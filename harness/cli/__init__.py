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
