"""`loco edit-eval EDIT_OUT --out DIR`: the original and the edited model on the same prompts and seeds."""

from __future__ import annotations

from harness.paths import cli_path

HELP = "compare an edited model with its original on the same prompts"
DESCRIPTION = ("Generate the same prompts and seeds with the original and the edited model and write rows "
               "(efficacy / generalization / specificity sets; image distance, embedding and K/V shift, and with "
               "--clip-weights the CLIP shift away from the concept and toward the target) carrying "
               "the edit id to DIR/results.parquet, with a per-set summary.json.")


def add_arguments(parser) -> None:
    parser.add_argument("edit", type=cli_path, metavar="EDIT_DIR", help="an output directory of `loco edit`")
    parser.add_argument("--prompts", type=cli_path, help="CSV/JSONL rows: prompt, set (efficacy | generalization | specificity), "
                        "optional target, attribute (default: the edit's augmentations, the concept-ablation prompts of the "
                        "concept and of its hard negatives, and unrelated prompts)")
    parser.add_argument("--out", type=cli_path, required=True, help="directory for results.parquet and summary.json")
    parser.add_argument("--seeds", default="0", help="seeds, e.g. 0-3 (default 0)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument("--metrics", help="comma-separated scorers applied to both models' images, e.g. probe "
                        "(columns: the edited image's under their names, the original's with suffix _original)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--clip-weights", help="CLIP checkpoint file or cached open_clip tag (e.g. openai): adds the "
                        "semantic columns (clip_concept_shift < 0, clip_target_shift > 0 when the edit works)")
    parser.add_argument("--clip-model", default="ViT-B-32", help="open_clip model name (default ViT-B-32)")
    parser.add_argument("--clip-random", action="store_true", help="random CLIP weights (tests and dry runs only)")


def run(args) -> int:
    from harness.edit.evaluate import evaluate_edit

    clip = None
    if args.clip_weights or args.clip_random:
        clip = {"model": args.clip_model, "weights": args.clip_weights, "allow_random": args.clip_random}
    print(evaluate_edit(args.edit, args.prompts, args.out, seeds=args.seeds, steps=args.steps, force=args.force,
                        metrics=[m.strip() for m in (args.metrics or "").split(",") if m.strip()], clip=clip))
    return 0
