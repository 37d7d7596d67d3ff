"""SD1.x/2.x (`harness.models.sd15`): the shared architecture specification on `tiny:sd15`."""

from tests.models.architecture_tester import ArchitectureTester


class TestSD15(ArchitectureTester):
    arch = "sd15"
