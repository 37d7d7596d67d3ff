"""LPIPS: learned perceptual distance between each image and its un-intervened reference.

LPIPS (Zhang et al., 2018) runs both images through an ImageNet network (here AlexNet, as torchmetrics'
default that P3's ``lpips`` option used), unit-normalises each of five feature maps along channels,
weighs the squared differences with learned 1×1 "linear heads", averages over space and sums over
layers. 0 means identical; larger means more different, so the direction is +1.

Offline: the ``lpips`` package ships the linear heads (``weights/v0.1/alex.pth``) but fetches the AlexNet
backbone from the internet, as torchmetrics does. We never download: the backbone is a torchvision
AlexNet state dict the user provides (option ``weights``: the file, e.g. torch hub's
``alexnet-owt-7be5be79.pth``, or a folder holding exactly one ``*.pth``/``*.safetensors``). Only its
``features.*`` tensors are used, so a file without the classifier works too. Without the option the
scorer refuses to build with a one-line error naming it.

Input scaling follows LPIPS: uint8 → [−1, 1] (``x / 127.5 − 1``), then the package's own per-channel
shift and scale (v0.1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from harness.metrics import ScoreBatch, Scorer, ScorerError, register
from harness.metrics.weights import files_fingerprint, resolve_device

BACKBONE_SUFFIXES = (".pth", ".pt", ".safetensors")


def backbone_file(weights: str | None) -> Path:
    """The AlexNet state-dict file named by the ``weights`` option (a file, or a folder with one)."""
    if not weights:
        raise ScorerError("scorers.lpips.weights: not set; give a local torchvision AlexNet state dict "
                          "(e.g. alexnet-owt-7be5be79.pth): LPIPS weights are never downloaded")
    path = Path(weights).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in BACKBONE_SUFFIXES)
        if len(found) != 1:
            raise ScorerError(f"scorers.lpips.weights: folder '{path}' should hold exactly one "
                              f"{'/'.join(BACKBONE_SUFFIXES)} file, found {len(found)}")
        path = found[0]
    if not path.is_file():
        raise ScorerError(f"scorers.lpips.weights: '{path}' does not exist")
    return path


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A state dict read without unpickling code (safetensors, or torch.load with weights_only)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def lpips_network(backbone: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The lpips package's AlexNet LPIPS with its shipped linear heads and our `backbone` tensors."""
    import lpips

    net = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    # lpips keeps AlexNet's `features` children under their own indices, split into slices:
    # net.slice2.3.weight is features.3.weight.
    renamed = {}
    for name in net.net.state_dict():
        source = "features." + name.split(".", 1)[1]
        if source not in backbone:
            raise ScorerError(f"scorers.lpips.weights: the state dict lacks '{source}' (not a torchvision AlexNet?)")
        renamed[name] = backbone[source]
    net.net.load_state_dict(renamed)
    return net.eval()


@register("lpips")
class LpipsScorer(Scorer):
    """LPIPS (AlexNet, v0.1) of each image against its row's reference image.

    Options: ``weights`` (required: local torchvision AlexNet state dict), ``device`` ("auto"), ``batch_size``.
    """

    heavy = True

    name = "lpips"
    metrics = ("lpips",)
    needs_reference = True
    directions: ClassVar[dict[str, int]] = {"lpips": 1}

    def __init__(self, weights: str | None = None, device: str = "auto", batch_size: int = 16, **options: Any):
        super().__init__(**options)
        path = backbone_file(weights)
        self.label = f"lpips-0.1:alex:sha256:{files_fingerprint([path])}"
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.net = lpips_network(load_tensors(path)).to(self.device)

    def identity(self) -> dict[str, str]:
        return {"lpips_model": self.label}

    @torch.inference_mode()
    def score(self, batch: ScoreBatch) -> dict[str, list]:
        if batch.references is None:
            raise ValueError("lpips needs reference images")
        values: list[float] = []
        for start in range(0, len(batch), self.batch_size):
            a = _to_unit_range(batch.images[start:start + self.batch_size]).to(self.device)
            b = _to_unit_range(batch.references[start:start + self.batch_size]).to(self.device)
            values += self.net(a, b).flatten().float().cpu().tolist()
        return {"lpips": values}


def _to_unit_range(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) → float (N, 3, H, W) in [−1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
