"""Models that ship inside the repository, by name: `model: toyworld` (or `builtin:toyworld`) is the
toyworld model organism trained by `loco toyworld train` (harness/toyworld), a diffusers directory
loaded like any other — safetensors only, local files only."""

from __future__ import annotations

from pathlib import Path

BUILTIN_DIRS: dict[str, Path] = {"toyworld": Path(__file__).resolve().parents[1] / "toyworld" / "weights"}


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
