"""Shared test set-up: offline, quiet, reproducible kernels, one tiny model per architecture per session."""

import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import functools  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from harness.cli import quiet  # noqa: E402
from harness.models import load_model, set_reproducible  # noqa: E402

quiet()
set_reproducible(True)


@functools.cache
def tiny(arch: str):
    """A shared, unmodified tiny model (tests that edit weights must load their own)."""
    return load_model(f"tiny:{arch}")


@pytest.fixture
def sd15():
    return tiny("sd15")


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
