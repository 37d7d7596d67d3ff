"""The architecture registry finds every architecture module without a list of them, by the names the rest
of loco uses: the `arch` of a row, a checkpoint's pipeline class, a plan's cost variant."""

import pytest

from harness.models import ModelLoadError, load_model, registry
from harness.models.registry import Architecture


def test_every_architecture_module_is_found_oldest_first():
    assert registry.names() == ["sd15", "if", "sdxl", "sd3"]
    assert registry.for_pipeline("StableDiffusionXLPipeline").name == "sdxl"
    assert registry.for_variant("sd21").name == "sd15"  # SD2.x: a cost variant of the SD1.x module
    assert registry.get("flux") is None and registry.for_pipeline("FluxPipeline") is None


def test_a_name_registers_once():
    sd15 = registry.get("sd15")
    assert registry.register(sd15) is sd15  # the module imported again: the same declaration
    with pytest.raises(ValueError, match="architecture 'sd15' is registered twice"):
        registry.register(Architecture(**{**sd15.__dict__, "title": "another"}))


def test_an_unknown_builder_name_lists_the_registered_ones():
    with pytest.raises(ModelLoadError, match="unknown tiny model; expected one of tiny:sd15, tiny:if, tiny:sdxl, "
                                             "tiny:sd3"):
        load_model("tiny:flux")
    with pytest.raises(ModelLoadError, match="unknown full-size random model; expected one of random:sd15, "
                                             "random:sdxl$"):
        load_model("random:sd3")
