"""`loco finetune SPEC.yaml --out DIR`: LoRA on chosen attention layers (`harness.finetune`)."""

from __future__ import annotations

from harness.paths import cli_path

HELP = "LoRA fine-tune of chosen attention layers (a candidate set, sites, or a baseline)"
DESCRIPTION = ("Train a LoRA (PEFT) on the projections of the attention layers a candidates file, `sites`, or a "
               "baseline (all_attention, all_cross_attention, random: N) names, and write a diffusers LoRA "
               "directory (pytorch_lora_weights.safetensors + manifest.json) that `pipe.load_lora_weights(DIR)` "
               "and a job's `lora: DIR` load. Run again with the same --out to resume an interrupted fine-tune.")


def add_arguments(parser) -> None:
    parser.add_argument("spec", metavar="SPEC",
                        help="fine-tune YAML file (model, candidates|sites|baseline|random, data, rank, ...)")
    parser.add_argument("--out", type=cli_path, required=True, help="adapter directory to write (resumed from its checkpoints)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec key (YAML value), e.g. --set steps=100")
    parser.add_argument("--force", action="store_true", help="replace a finished adapter or another spec's checkpoints")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")


def run(args) -> int:
    import sys

    import torch

    from harness.finetune import load_finetune, run_finetune

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = load_finetune(args.spec, args.overrides)
    try:
        manifest = run_finetune(spec, args.out, force=args.force, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"loco: interrupted; a checkpoint was written, run the same command again to resume ({args.out})",
              file=sys.stderr)
        return 130
    print(f"{manifest['lora_id']}: {len(manifest['target_modules'])} modules in {len(manifest['sites'])} sites, "
          f"{manifest['trainable_params']:,} trainable parameters ({100 * manifest['trainable_share']:.3f}% of the "
          f"{manifest['denoiser']}), {manifest['steps']} steps in {manifest['seconds']:.1f} s, final loss "
          f"{manifest['final_loss']:.4f} → {args.out}")
    return 0
