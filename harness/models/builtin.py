"""Models that ship inside the repository, by name: `model: toyworld` (or `builtin:toyworld`) is the
toyworld model organism trained by `loco toyworld train` (harness/toyworld), `model: toyworld-dit` its
diffusion-transformer sibling (`loco toyworld train --arch pixart`); each a diffusers directory loaded like
any other — safetensors only, local files only."""

from __future__ import annotations

from pathlib import Path

_TOYWORLD = Path(__file__).resolve().parents[1] / "toyworld"
# toyworld: the UNet organism (SD1.x layout); toyworld-dit: the DiT organism (PixArt-α layout), same world.
BUILTIN_DIRS: dict[str, Path] = {"toyworld": _TOYWORLD / "weights", "toyworld-dit": _TOYWORLD / "weights-dit"}


def builtin_path(model: str) -> Path | None:
    """The shipped directory for a built-in model name (`toyworld`, `builtin:toyworld`), else None."""
    name = model.removeprefix("builtin:")
    if name in BUILTIN_DIRS:
        return BUILTIN_DIRS[name]
    if model.startswith("builtin:"):
        from harness.errors import did_you_mean
        from harness.models.adapters import ModelLoadError

        raise ModelLoadError(f"model '{model}': unknown built-in model; expected one of "
                             + ", ".join(f"builtin:{n}" for n in BUILTIN_DIRS) + did_you_mean(name, BUILTIN_DIRS))
    return None
