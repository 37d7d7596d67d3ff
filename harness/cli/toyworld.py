"""`loco toyworld train --out DIR`: train the toyworld model organism from a seed and write its report."""

from __future__ import annotations

HELP = "train a toyworld model organism (a small SD1.x-style UNet or PixArt-style DiT on a synthetic world)"
DESCRIPTION = ("Render the toyworld, train its VAE, then its UNet and CLIP text encoder jointly, from one seed "
               "(--arch pixart: a PixArt-α DiT and a tiny T5 on the UNet organism's VAE); "
               "writes DIR/model (a diffusers pipeline, safetensors), DIR/settings.json, loss.csv/png, "
               "eval.csv (colour and probe checks) and samples.png. Deterministic from --seed on one machine "
               "(CPU kernels may round differently elsewhere).")

ARCHS = ("unet", "pixart")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="toyworld_command", required=True, metavar="ACTION")
    train = sub.add_parser("train", help="train the model and write a training report",
                           description=DESCRIPTION)
    train.add_argument("--out", required=True, help="output directory")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--steps", type=int,
                       help="diffusion training steps (default 11000: the one-run recipe, ~55 min on one core)")
    train.add_argument("--minutes", type=float, help="stop diffusion training after this much wall time "
                       "(--steps still sets the learning-rate schedule)")
    train.add_argument("--vae-steps", type=int, help="VAE training steps (default 600)")
    train.add_argument("--vae", help="reuse a trained VAE directory instead of training one")
    train.add_argument("--init", help="continue from a trained pipeline directory (its UNet, text encoder and VAE; "
                       "a fresh optimizer and learning-rate schedule)")
    train.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    train.add_argument("--warmup", type=int, help="warmup steps (default 100)")
    train.add_argument("--samples", type=int, help="pre-rendered training images (default 30000)")
    train.add_argument("--batch", type=int, help="diffusion batch size")
    train.add_argument("--eval-every", type=int, help="steps between the quick colour and probe checks (default 250; "
                       "0: only at the end)")
    train.add_argument("--partial-captions", type=float, metavar="SHARE",
                       help="share of object captions swapped for partial ones naming only some attributes "
                       "(teaches each word its own attribute; default 0)")
    train.add_argument("--arch", default="unet", help="the organism: unet (`model: toyworld`, the default) or pixart "
                       "(`model: toyworld-dit`)")
    train.add_argument("--config", default="base", help="model size: base (shipped), wide (2x channels) or micro "
                       "(smoke tests); --arch pixart: base (8 blocks, width 128), narrow (width 96) or micro")
    ship = sub.add_parser("ship", help="copy a trained run's pipeline and report into the shipped weights directory",
                          description="Copy RUN/model (or RUN/checkpoint) and RUN's report files into "
                          "harness/toyworld/weights (weights-dit for a DiT run), which `model: toyworld` "
                          "(`model: toyworld-dit`) loads.")
    ship.add_argument("--run", required=True, help="a `loco toyworld train --out` directory")
    ship.add_argument("--checkpoint", action="store_true", help="ship RUN/checkpoint (a run still training)")


def run(args) -> int:
    if args.toyworld_command == "ship":
        return _ship(args)
    return _train(args)


def _ship(args) -> int:
    from pathlib import Path

    from harness.models.builtin import BUILTIN_DIRS
    from harness.toyworld.ship import built_in_name, ship

    name = built_in_name(Path(args.run), "checkpoint" if args.checkpoint else "model")
    files = ship(Path(args.run), BUILTIN_DIRS[name], "checkpoint" if args.checkpoint else "model")
    size = sum(f.stat().st_size for f in files)
    print(f"shipped {len(files)} files ({size / 2**20:.1f} MiB) to {BUILTIN_DIRS[name]}")
    return 0


def _train(args) -> int:
    from dataclasses import replace
    from pathlib import Path

    from harness.errors import UserError, did_you_mean
    from harness.toyworld.dit import DIT_CONFIGS
    from harness.toyworld.model import CONFIGS

    if args.arch not in ARCHS:
        raise UserError(f"--arch: unknown '{args.arch}'; expected one of {', '.join(ARCHS)}"
                        f"{did_you_mean(args.arch, ARCHS)}")
    configs = DIT_CONFIGS if args.arch == "pixart" else CONFIGS
    if args.config not in configs:
        raise UserError(f"--config: unknown '{args.config}' for --arch {args.arch}; expected one of "
                        f"{', '.join(configs)}{did_you_mean(args.config, configs)}")
    for flag in ("steps", "vae_steps", "samples", "batch", "minutes", "lr", "warmup", "eval_every"):
        value = getattr(args, flag)
        if value is not None and (value < 0 if flag in ("vae_steps", "warmup", "eval_every") else value <= 0
                                  if flag in ("minutes", "lr") else value < 1):
            raise UserError(f"--{flag.replace('_', '-')}: expected a positive number, got {value}")
    if args.partial_captions is not None and not 0 <= args.partial_captions <= 1:
        raise UserError(f"--partial-captions: expected a share between 0 and 1, got {args.partial_captions}")
    vae = Path(args.vae) if args.vae else None
    if vae is not None and not (vae / "config.json").is_file():
        raise UserError(f"--vae: '{vae}' is not a saved AutoencoderKL directory (no config.json)")

    init = Path(args.init) if args.init else None
    denoiser = "transformer" if args.arch == "pixart" else "unet"
    if init is not None and not (init / denoiser / "config.json").is_file():
        raise UserError(f"--init: '{init}' is not a trained toyworld {args.arch} pipeline (no {denoiser}/config.json)")

    from harness.toyworld.train import TrainConfig, train

    model_cfg = configs[args.config]
    cfg = TrainConfig(seed=args.seed)
    overrides = {"steps": args.steps, "lr": args.lr, "warmup": args.warmup, "vae_steps": args.vae_steps,
                 "n_samples": args.samples, "batch": args.batch,
                 "minutes": args.minutes, "partial_captions": args.partial_captions, "eval_every": args.eval_every}
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if cfg.steps < cfg.warmup:
        cfg = replace(cfg, warmup=max(1, cfg.steps // 10))
    out = Path(args.out)
    train(out, model_cfg, cfg, vae, log=lambda m: print(m, flush=True), init=init)
    print(f"model: {out / 'model'}  report: {out / 'settings.json'}, {out / 'loss.png'}, {out / 'samples.png'}")
    return 0
