"""`loco edit-eval EDIT_OUT --out DIR`: the original and the edited model on the same prompts and seeds."""

from __future__ import annotations

HELP = "compare an edited model with its original on the same prompts"
DESCRIPTION = ("Generate the same prompts and seeds with the original and the edited model and write rows "
               "(efficacy / generalization / specificity sets; image distance, embedding and K/V shift) carrying "
               "the edit id to DIR/results.parquet, with a per-set summary.json.")


def add_arguments(parser) -> None:
    parser.add_argument("edit", help="an output directory of `loco edit`")
    parser.add_argument("--prompts", help="CSV/JSONL rows: prompt, set (efficacy | generalization | specificity), "
                        "optional target, attribute (default: the edit's augmentations, the concept-ablation prompts of the "
                        "concept and of its hard negatives, and unrelated prompts)")
    parser.add_argument("--out", required=True, help="directory for results.parquet and summary.json")
    parser.add_argument("--seeds", default="0", help="seeds, e.g. 0-3 (default 0)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument("--metrics", help="comma-separated scorers applied to both models' images, e.g. probe "
                        "(columns: the edited image's under their names, the original's with suffix _original)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")


def run(args) -> int:
    from harness.edit.evaluate import evaluate_edit

    print(evaluate_edit(args.edit, args.prompts, args.out, seeds=args.seeds, steps=args.steps, force=args.force,
                        metrics=[m.strip() for m in (args.metrics or "").split(",") if m.strip()]))
    return 0
