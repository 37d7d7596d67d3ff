"""Compatibility shim: the full-size random builders (``random:<arch>``) moved to their architecture modules
(`harness.models.sd15`, `harness.models.sdxl`), the shared wrapper to `harness.models.parts.build_random`.
Delete once no branch imports from here."""

from __future__ import annotations

import torch


def build_fullsize(arch: str, device: str, dtype: torch.dtype):
    """The random-weight full-size pipeline of `arch`, initialised on `device` in `dtype`."""
    from harness.models import registry
    from harness.models.parts import build_random

    return build_random(registry.get(arch).fullsize, device, dtype)
