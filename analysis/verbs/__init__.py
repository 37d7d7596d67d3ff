"""The `loco` verbs that analyse runs; listed by dotted name in `harness.cli.registry.VERBS`."""

from analysis.intervals import N_BOOT


def add_bootstrap(parser) -> None:
    """``--bootstrap N``, with one default for every verb that draws intervals (`analysis.intervals.N_BOOT`)."""
    parser.add_argument("--bootstrap", type=int, default=N_BOOT, metavar="N",
                        help=f"bootstrap resamples (default {N_BOOT}, as every verb)")
