"""Attribute probes for the toyworld: small trained classifiers that read an image's shape, colour,
background and word, so that localization and editing on the toyworld model are scored by what the
image shows, as CLIP and OCR score real checkpoints (the scorer is `harness.metrics.probe`).

Why trained probes rather than rules: the model's samples are not clean renders — edges are soft, colours
drift, a few pixels are noise — and a rule tuned on renders (say, "the most saturated hue") breaks on
them in ways that are hard to see. A CNN trained on renders *with that kind of damage* (jitter, blur,
noise, small colour and contrast shifts: `harness.toyworld.probes.train`) reads both, and its accuracy is
measured, not assumed: ≥97% on renders of the combinations held out of the model's training
(`tests/unit/test_toyworld_probes.py`), and per attribute on generated images in the model card.

The weights (`weights/probes.safetensors`, ~0.4 MB) hold the network and, in the file's metadata, each
head's label list and the image size it reads; `load_probes()` checks both against the world.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

WEIGHTS = Path(__file__).with_name("weights") / "probes.safetensors"


@dataclass
class Probes:
    """A loaded probe network and what it reads."""

    net: torch.nn.Module
    labels: dict[str, list[str]]  # attribute -> label names, in the head's output order
    size: int  # the image size it was trained at
    fingerprint: str  # short SHA-256 of the weights file
    device: torch.device

    @property
    def model_name(self) -> str:
        return f"toyworld-probes:{self.size}px:" + "+".join(self.labels)

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch: int = 256) -> dict[str, tuple[list[str], np.ndarray]]:
        """uint8 (N, H, W, 3) → {attribute: (predicted labels, softmax probabilities (N, K))}."""
        chunks: dict[str, list[np.ndarray]] = {a: [] for a in self.labels}
        for start in range(0, len(images), batch):
            x = self.net.prepare(images[start:start + batch]).to(self.device)
            for attr, logits in self.net(x).items():
                chunks[attr].append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        out = {}
        for attr, parts in chunks.items():
            probs = np.concatenate(parts) if parts else np.zeros((0, len(self.labels[attr])))
            out[attr] = ([self.labels[attr][k] for k in probs.argmax(axis=1)], probs)
        return out

    def probability(self, attribute: str, probs: np.ndarray, label: str | None) -> float | None:
        """The probability one row's head gives `label` (None when there is no label to ask about, or the
        probe does not know it)."""
        if label is None or label not in self.labels[attribute]:
            return None
        return float(probs[self.labels[attribute].index(label)])


def read_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    return {"labels": json.loads(meta["labels"]), "size": int(meta["size"]), "width": int(meta["width"])}


@functools.cache
def _load(path: Path, device: str) -> Probes:
    from safetensors.torch import load_file

    from harness.metrics.weights import files_fingerprint, resolve_device
    from harness.toyworld.probes.net import ProbeNet

    meta = read_metadata(path)
    net = ProbeNet({a: len(v) for a, v in meta["labels"].items()}, width=meta["width"], size=meta["size"])
    net.load_state_dict(load_file(str(path)))
    dev = resolve_device(device)
    net.to(dev).eval()
    return Probes(net, meta["labels"], meta["size"], files_fingerprint([path]), dev)


def load_probes(weights: str | Path | None = None, device: str = "cpu", option: str = "probe weights") -> Probes:
    """The probes in `weights` (default: the shipped file), cached per process; a missing or foreign file
    is a ScorerError naming `option`."""
    from harness.metrics import ScorerError

    path = Path(weights).expanduser() if weights else WEIGHTS
    if not path.is_file():
        raise ScorerError(f"{option}: '{path}' does not exist (expected a probes .safetensors file)")
    try:
        return _load(path.resolve(), device)
    except Exception as exc:  # safetensors raises its own SafetensorError for a damaged header
        raise ScorerError(f"{option}: '{path}' is not a toyworld probes file ({type(exc).__name__})") from None
