"""The verbs' help agrees with itself (issue #20 item 19): positional arguments are named in capitals
everywhere, `--bootstrap` has one default, every verb that runs a sweep takes `--quiet`, a metric named
after its scorer suggests the scorer's metric, and a job verb given an edit file says so."""

import argparse

import pytest

from analysis.intervals import N_BOOT
from harness.cli import main
from harness.cli.registry import VERBS, build_parser

RUNS_A_SWEEP = ("sweep", "demo", "regress", "candidates")


def subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_positional_arguments_are_named_in_capitals_in_every_verb():
    for verb, parser in subparsers().items():
        for action in parser._actions:
            if not action.option_strings and not action.choices:
                name = action.metavar or action.dest
                assert name == name.upper(), f"loco {verb}: positional '{name}'"


def test_bootstrap_has_one_default_and_every_sweeping_verb_takes_quiet():
    parsers = subparsers()
    defaults = {verb: a.default for verb, p in parsers.items() for a in p._actions if "--bootstrap" in a.option_strings}
    assert set(defaults) >= {"rank", "candidates", "regress", "report"} and set(defaults.values()) == {N_BOOT}
    for verb in RUNS_A_SWEEP:
        assert any("--quiet" in a.option_strings for a in parsers[verb]._actions), verb
    assert set(parsers) == set(VERBS)


@pytest.mark.parametrize("argv, words", [
    (["plan", "--set", "metrics=[clip]"], "unknown metric 'clip' (did you mean 'clip_score'?)"),
    (["plan", "jobs/edit/locoedit_tiny_sd15.yaml"], "is an edit file (it has `edits:`), not a sweep job; run it "
                                                     "with `loco edit jobs/edit/locoedit_tiny_sd15.yaml --out DIR`"),
])
def test_mistakes_name_what_was_meant(argv, words, capsys, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
