"""A job's model list: `model: [a, b]` or `models: [a, b]` — several models swept by one job, each into
its own run directory named by `model_slug` (`harness.multisweep`). `harness.jobs.JobSpec` validates
with these functions."""

from __future__ import annotations

import re
from typing import Any


def model_slug(model: str) -> str:
    """The run subdirectory of `model` in a multi-model sweep: its id with every character outside
    ``[A-Za-z0-9._-]`` made ``-`` (no ``=``: DuckDB would read ``key=value`` folders as Hive partitions)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.") or "model"


def normalize(value: Any) -> Any:
    """Job data before validation: `model: [a, b]` becomes `models: [a, b]`, and `model` then names the
    first (for code that needs one model); `model` and `models` together are refused."""
    if not isinstance(value, dict):
        return value
    value = dict(value)
    if isinstance(value.get("model"), list):
        if value.get("models") is not None:
            raise ValueError("model: a list of models and `models` both given; keep one of them")
        value["models"] = value.pop("model")
    elif value.get("models") is not None and value.get("model") is not None:
        raise ValueError("models: `model` and `models` both given; list every model under `models`")
    models = value.get("models")
    if isinstance(models, list) and models and all(isinstance(m, str) for m in models):
        value["model"] = models[0]
    return value


def check(models: list[str] | None) -> list[str] | None:
    """The `models` list: not empty, no model twice, no two models sharing a run directory."""
    if models is None:
        return None
    if not models:
        raise ValueError("expected at least one model")
    slugs: dict[str, str] = {}
    for model in models:
        if not model:
            raise ValueError("expected non-empty model names")
        if model in slugs.values():
            raise ValueError(f"'{model}' is listed twice")
        slug = model_slug(model)
        if slug in slugs:
            raise ValueError(f"'{model}' and '{slugs[slug]}' would share the run directory '{slug}'")
        slugs[slug] = model
    return models
