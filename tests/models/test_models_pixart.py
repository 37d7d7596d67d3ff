"""PixArt-α and PixArt-Σ (`harness.models.pixart`): the shared architecture specification on `tiny:pixart` and
`tiny:pixart_sigma`; the planted model keeps the middle block's cross-attention (Zarei et al. name no fixed
layer)."""

from tests.models.architecture_tester import ArchitectureTester


class TestPixArt(ArchitectureTester):
    arch = "pixart"
    planted_label = "cross_attn#13"


class TestPixArtSigma(ArchitectureTester):
    arch = "pixart_sigma"
    planted_label = "cross_attn#13"
