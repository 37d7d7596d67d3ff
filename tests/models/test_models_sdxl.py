"""SDXL (`harness.models.sdxl`): the shared architecture specification on `tiny:sdxl`."""

from tests.models.architecture_tester import ArchitectureTester


class TestSDXL(ArchitectureTester):
    arch = "sdxl"
