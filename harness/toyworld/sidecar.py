"""`toyworld.json`: the inference settings that go with the shipped weights (the demo reads them, and the
loader turns them into the model's generation defaults, so `model: toyworld` samples at 32 px in few
steps instead of SD's 512 px / 50 steps)."""

from __future__ import annotations

import json
from pathlib import Path

SIDECAR = "toyworld.json"
INFERENCE = {"steps": 15, "guidance_scale": 4.0, "height": 32, "width": 32,
             "scheduler": "DPMSolverMultistepScheduler"}


def write_sidecar(directory: Path, extra: dict, inference: dict | None = None) -> None:
    data = {"inference": dict(inference or INFERENCE), **extra}
    (Path(directory) / SIDECAR).write_text(json.dumps(data, indent=2) + "\n")


def read_sidecar(directory: Path) -> dict | None:
    """The sidecar's contents, or None for a directory that is not a toyworld model."""
    path = Path(directory) / SIDECAR
    return json.loads(path.read_text()) if path.is_file() else None
