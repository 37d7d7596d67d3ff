"""The verb registry: `loco VERB` → the module that implements it, by dotted name, imported on demand.

A verb is one module exposing ``HELP`` (one line for `loco --help`), ``DESCRIPTION``,
``add_arguments(parser)`` and ``run(args) -> int``. Adding a verb is writing that module and adding one
line to `VERBS`. Modules are named by string and imported only when the parser is built or the verb is
called, so verbs that live in `analysis/` (rank, and later sql, candidates, regress, report) add no
import of `analysis` to `harness`: `analysis` imports `harness`, never the other way round.
Keep a verb module's top-level imports light (argparse only); import the work inside `run`.
"""

from __future__ import annotations

import argparse
import importlib

VERBS: dict[str, str] = {  # in the order `loco --help` lists them
    "demo": "harness.cli.demo",
    "sweep": "harness.cli.sweep",
    "plan": "harness.cli.plan",
    "rank": "analysis.verbs.rank",
    "candidates": "analysis.verbs.candidates",
    "sql": "analysis.verbs.sql",
    "regress": "analysis.verbs.regress",
    "report": "analysis.verbs.report",
    "prompts": "harness.cli.prompts",
    "score": "harness.cli.score",
    "sites": "harness.cli.sites",
    "edit": "harness.cli.edit",
    "edit-eval": "harness.cli.edit_eval",
    "finetune": "harness.cli.finetune",
    "toyworld": "harness.cli.toyworld",
}


def verb_module(name: str):
    return importlib.import_module(VERBS[name])


QUIET_HELP = "no live progress display (logs, CI); warnings and the summary still print"


def add_quiet(parser) -> None:
    """``--quiet``, the same on every verb that runs a sweep (sweep, demo, regress, candidates)."""
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)



def run_verb(module, args) -> int:
    """Run a verb, with no live display under its ``--quiet``."""
    from harness.run.progress import no_live_display

    with no_live_display(bool(getattr(args, "quiet", False))):
        return module.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loco", description="Localize and edit knowledge in text-to-image "
                                     "diffusion models: layer-by-layer intervention sweeps on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in VERBS:
        module = verb_module(name)
        p = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(p)
        p.set_defaults(func=lambda args, module=module: run_verb(module, args))
    return parser


def call_verb(name: str, argv: list[str]) -> int:
    """Run verb `name` with `argv` from inside another verb (errors propagate to the caller)."""
    module = verb_module(name)
    parser = argparse.ArgumentParser(prog=f"loco {name}")
    module.add_arguments(parser)
    return run_verb(module, parser.parse_args(argv))
