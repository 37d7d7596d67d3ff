"""PixArt-α and PixArt-Σ (`harness.models.pixart`): the shared architecture specification on `tiny:pixart` and
`tiny:pixart_sigma`, and the planted known answer through a sweep on PixArt-α (Σ has the same blocks). The
planted model keeps the middle block's cross-attention: Zarei et al. localize per concept and name no fixed
layer."""

from tests.models.architecture_tester import ArchitectureTester, KVEditTester, PlantedSweepTester


class TestPixArt(ArchitectureTester, PlantedSweepTester, KVEditTester):
    arch = "pixart"
    planted_label = "cross_attn#13"


class TestPixArtSigma(ArchitectureTester):
    arch = "pixart_sigma"
    planted_label = "cross_attn#13"
