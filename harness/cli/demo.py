"""`loco demo [--out DIR]`: localize, rank, edit and report on the toyworld model (`harness.toyworld.demo`)."""

from __future__ import annotations

from harness.cli.registry import add_quiet
from harness.paths import cli_model, cli_path

HELP = "the whole flow on a built-in toyworld organism: sweeps, ranking, candidates, an edit, the report"
DESCRIPTION = ("On the toyworld model (trained on a synthetic world, read by attribute probes): LocoGen and causal "
               "tracing for colour and shape and attention patching for the rendered word on local Ray, rankings "
               "and candidate sets, a LocoEdit of red → blue with its evaluation, and the HTML report. A few minutes "
               "on a 2-core CPU; prints where the report is. --model toyworld-dit: the same on the DiT organism, with "
               "four localizers side by side (LocoGen, attention patching, causal tracing, attention contribution).")


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=cli_path, help="output directory (default runs/demo, runs/demo-dit for "
                        "--model toyworld-dit; replaced)")
    parser.add_argument("--model", type=cli_model,
                        help="toyworld-dit (the DiT organism and its own jobs), or another model of the toyworld's "
                        "vocabulary run through the UNet organism's jobs (default: toyworld)")
    parser.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                        help="a job override for every sweep, e.g. --set seeds=[0]")
    parser.add_argument("--local", action="store_true", help="run the sweeps in this process instead of on Ray")
    add_quiet(parser)


def run(args) -> int:
    import time

    from harness.toyworld.demo import run_demo

    t0 = time.perf_counter()
    out = args.out or cli_path("runs/demo-dit" if args.model == "toyworld-dit" else "runs/demo")
    result = run_demo(out, model=args.model, overrides=args.overrides or [], local=args.local)
    sets = result.edit_summary()["sets"]
    print("\n== the edit, per prompt set (probe: colour read as the prompt's / as blue), original → edited")
    for name, s in sets.items():
        pairs = [f"{label} {s.get(k + '_original', float('nan')):.2f} → {s.get(k, float('nan')):.2f}"
                 for label, k in (("P(prompt's colour)", "probe_p_prompt"), ("colour correct", "probe_ok_prompt"),
                                  ("shape correct", "probe_shape_ok"))]
        print(f"  {name:<15} " + "   ".join(pairs))
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    print(f"\nloco demo: done in {time.perf_counter() - t0:.0f} s ({steps})")
    print(f"report: {result.report.resolve()}")
    return 0
