"""SD3 (`harness.models.sd3`): the shared architecture specification on `tiny:sd3`."""

from tests.models.architecture_tester import ArchitectureTester


class TestSD3(ArchitectureTester):
    arch = "sd3"
