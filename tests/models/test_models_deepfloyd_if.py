"""DeepFloyd IF (`harness.models.deepfloyd_if`): the shared architecture specification on `tiny:if`."""

from tests.models.architecture_tester import ArchitectureTester


class TestDeepFloydIF(ArchitectureTester):
    arch = "if"
    batch_tolerance = 1e-3  # the pixel-space, thresholded DDPM sampler amplifies GEMM rounding more than a VAE
