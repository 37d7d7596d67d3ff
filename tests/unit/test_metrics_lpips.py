"""LPIPS is built only from local weights: without them it refuses at once, naming the option; with a
(random, features-only) AlexNet state dict it is a distance: 0 for identical images, positive otherwise."""

import numpy as np
import pytest
import torch

from harness.metrics import ScoreBatch, ScorerError, direction
from harness.metrics.perceptual import LpipsScorer


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> str:
    from safetensors.torch import save_file
    from torchvision.models import alexnet

    torch.manual_seed(0)
    features = {k: v for k, v in alexnet(weights=None).state_dict().items() if k.startswith("features.")}
    path = tmp_path_factory.mktemp("alexnet") / "alexnet-features.safetensors"
    save_file(features, str(path))
    return str(path)


def test_without_weights_lpips_refuses_to_build():
    with pytest.raises(ScorerError, match=r"^scorers\.lpips\.weights: not set; .*never downloaded$"):
        LpipsScorer()


def test_a_missing_file_or_a_foreign_state_dict_is_named(tmp_path):
    with pytest.raises(ScorerError, match="does not exist"):
        LpipsScorer(weights=str(tmp_path / "alexnet.pth"))
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ScorerError, match="lacks 'features.0.weight'"):
        LpipsScorer(weights=str(tmp_path), device="cpu")


def test_lpips_is_zero_for_identical_images_and_positive_otherwise(backbone):
    scorer = LpipsScorer(weights=backbone, device="cpu")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    out = scorer.score(ScoreBatch(images=images, references=images[[0, 0, 0]]))["lpips"]
    assert out[0] == pytest.approx(0.0, abs=1e-7)
    assert all(v > 0 for v in out[1:])
    assert scorer.identity()["lpips_model"].startswith("lpips-0.1:alex:sha256:")
    assert direction("lpips") == 1
