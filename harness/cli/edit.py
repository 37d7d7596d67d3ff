"""`loco edit EDIT.yaml --out DIR`: carry out an edit (`harness.edit`); `--revert` undoes a weight edit."""

from __future__ import annotations

from harness.paths import cli_path

HELP = "edit a model's knowledge in closed form or at inference time"
DESCRIPTION = ("Carry out the edit an EDIT.yaml describes (method diffquickfix | locoedit | uce | time | neurons | "
               "text_patch). Weight edits write a complete diffusers directory (only the edited parameters differ) "
               "plus loco_edit/delta.safetensors and manifest.json; inference-time edits write edit.yaml for a "
               "job's `edit:` key or harness.edit.install.install_edit(pipe, FILE).")


def add_arguments(parser) -> None:
    parser.add_argument("spec", nargs="?", metavar="EDIT", help="edit YAML file")
    parser.add_argument("--out", type=cli_path, help="output directory")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--revert", type=cli_path, metavar="EDITED_DIR", help="write the original model back from an edited one")


def run(args) -> int:
    from pathlib import Path

    from harness.errors import UserError

    if not args.out:
        raise UserError("--out: required (the directory the edited model or edit spec is written to)")
    if args.revert:
        from harness.edit.revert import revert_model

        revert_model(args.revert, args.out, force=args.force)
        print(f"reverted {args.revert} → {args.out}")
        return 0
    if not args.spec:
        raise UserError("loco edit: give an edit file (EDIT.yaml) or --revert EDITED_DIR")
    from harness.edit.run import run_edit
    from harness.edit.spec import load_edit

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
