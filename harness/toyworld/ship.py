"""Copy a finished training run into the shipped weights directory (`harness/toyworld/weights`): the
diffusers pipeline (safetensors only) plus its report — settings.json, loss.csv/png, eval.csv,
samples.png — which the model card reads."""

from __future__ import annotations

import shutil
from pathlib import Path

REPORT_FILES = ("settings.json", "loss.csv", "loss.png", "eval.csv", "samples.png")
PARTS = ("unet", "transformer", "vae", "text_encoder", "tokenizer", "scheduler")


def built_in_name(run_dir: Path, model_subdir: str = "model") -> str:
    """The built-in model a run's pipeline ships as: `toyworld` (a UNet) or `toyworld-dit` (a PixArt DiT)."""
    return "toyworld-dit" if (Path(run_dir) / model_subdir / "transformer").is_dir() else "toyworld"


def ship(run_dir: Path, dest: Path, model_subdir: str = "model") -> list[Path]:
    """Replace `dest`'s pipeline files with `run_dir/model_subdir`'s and copy the report; returns the files."""
    from harness.errors import UserError

    source = Path(run_dir) / model_subdir
    if not (source / "model_index.json").is_file():
        raise UserError(f"--run: '{source}' is not a trained toyworld pipeline (no model_index.json)")
    unsafe = [p for p in source.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    if unsafe:
        raise UserError(f"--run: '{unsafe[0]}' is not safetensors; only safetensors weights are shipped")
    dest.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        shutil.rmtree(dest / part, ignore_errors=True)
    shutil.copytree(source, dest, dirs_exist_ok=True)
    for name in REPORT_FILES:
        if (Path(run_dir) / name).is_file():
            shutil.copy2(Path(run_dir) / name, dest / name)
    return sorted(p for p in dest.rglob("*") if p.is_file())
