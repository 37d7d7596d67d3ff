"""`loco edit`: the edit verbs, registered on loco's command line by `register`.

    loco edit EDIT.yaml --out DIR             carry out an edit (weights: a model directory; inference-time:
                                              an edit.yaml spec)
    loco edit --revert EDITED_DIR --out DIR   the original model back, bit for bit, from the delta
    loco edit-eval EDIT_OUT [--prompts FILE] --out DIR   original vs edited on the same prompts and seeds
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError


def cmd_edit(args) -> int:
    from harness.edit.run import run_edit
    from harness.edit.spec import load_edit

    if args.revert:
        from harness.edit.revert import revert_model

        revert_model(args.revert, args.out, force=args.force)
        print(f"reverted {args.revert} → {args.out}")
        return 0
    if not args.spec:
        raise UserError("loco edit: give an edit file (EDIT.yaml) or --revert EDITED_DIR")
    if not args.out:
        raise UserError("--out: required (the directory the edited model or edit spec is written to)")
    spec = load_edit(Path(args.spec))
    manifest = run_edit(spec, args.out, force=args.force)
    what = "edited model" if spec.is_weight_edit else "inference-time edit spec (edit.yaml)"
    residual = ""
    if manifest.get("residuals"):
        worst = max(r["edit_residual"] for r in manifest["residuals"].values())
        residual = f", {len(manifest['residuals'])} matrices, worst relative residual {worst:.3g}"
    print(f"{manifest['edit_id']}: {spec.method} in {manifest.get('edit_seconds', 0.0):.3f} s{residual} → "
          f"{what} at {args.out}")
    return 0


def cmd_edit_eval(args) -> int:
    from harness.edit.evaluate import evaluate_edit

    summary = evaluate_edit(args.edit, args.prompts, args.out, seeds=args.seeds, force=args.force)
    print(summary)
    return 0


def register(sub) -> None:
    p = sub.add_parser("edit", help="edit a model's knowledge in closed form or at inference time",
                       description="Carry out the edit an EDIT.yaml describes (method diffquickfix | locoedit | "
                       "uce | time | neurons | text_patch). Weight edits write a complete diffusers directory "
                       "(only the edited parameters differ) plus loco_edit/delta.safetensors and manifest.json; "
                       "inference-time edits write edit.yaml for a job's `edit:` key or install_edit().")
    p.add_argument("spec", nargs="?", help="edit YAML file")
    p.add_argument("--out", help="output directory")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.add_argument("--revert", metavar="EDITED_DIR", help="write the original model back from an edited one")
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser("edit-eval", help="compare an edited model with its original on the same prompts",
                       description="Generate the same prompts and seeds with the original and the edited model "
                       "and write rows (efficacy / generalization / specificity sets, image-distance and "
                       "conditioning-shift proxies) carrying the edit id to DIR/results.parquet.")
    p.add_argument("edit", help="an output directory of `loco edit`")
    p.add_argument("--prompts", help="CSV/JSONL rows: prompt, set (efficacy | generalization | specificity), "
                   "optional target (default: the edit's augmentations, the concept-ablation prompts of the concept "
                   "and of its hard negatives, and unrelated prompts)")
    p.add_argument("--out", required=True, help="directory for results.parquet and summary.json")
    p.add_argument("--seeds", default="0", help="seeds, e.g. 0-3 (default 0)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=cmd_edit_eval)
