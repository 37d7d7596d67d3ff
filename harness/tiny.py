"""Compatibility shim: the tiny builders moved to their architecture modules (`harness.models.sd15`, ...),
their shared parts to `harness.models.parts`. Delete once no branch imports from here."""

from __future__ import annotations

from harness.models.deepfloyd_if import build_tiny_stage_ii as build_tiny_if_stage_ii
from harness.models.parts import CLIP_MAX_LENGTH, TINY_SEED, clip_tokenizer, seeded, t5_tokenizer

__all__ = ["CLIP_MAX_LENGTH", "TINY_SEED", "build_tiny", "build_tiny_if_stage_ii", "clip_tokenizer",
           "t5_tokenizer"]


def __getattr__(name: str):
    if name == "TINY_ARCHS":
        from harness.models import registry

        return tuple(registry.names())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_tiny(arch: str):
    """The tiny pipeline of `arch`, weights drawn from the fixed seed."""
    from harness.models import registry

    found = registry.get(arch)
    if found is None:
        raise ValueError(f"unknown tiny model 'tiny:{arch}'; expected one of "
                         + ", ".join(f"tiny:{a}" for a in registry.names()))
    return seeded(found.tiny)
