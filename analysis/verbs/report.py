"""`loco report RUN_DIR... [EDIT_EVAL_DIR...] [--out FILE]`: one self-contained HTML report (see `analysis.report`)."""

from __future__ import annotations

from analysis.verbs import add_bootstrap

HELP = "one self-contained HTML report of runs (plots, images, candidates, verdict)"
DESCRIPTION = ("Heatmaps and effect-vs-layer curves with interval bands, the papers' figures, image grids (with "
               "save_images; causal tracing: clean / corrupted / restored at the top states), candidate sets, "
               "agreement, an edit's table and before/after images (a `loco edit-eval` directory among the paths), "
               "the regression verdict for two runs of one method naming the failing sites, and provenance, in one "
               "HTML file that opens offline.")


def add_arguments(p) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories, and `loco edit-eval` outputs")
    p.add_argument("--out", help="HTML file to write (default: RUN_DIR/report.html of the first run)")
    add_bootstrap(p)


def run(args) -> int:
    from analysis.report import write_report

    out = write_report(args.run_dirs, args.out, n_boot=args.bootstrap)
    print(f"wrote {out}")
    return 0
