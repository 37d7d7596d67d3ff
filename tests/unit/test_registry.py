"""The architecture registry finds every architecture module without a list of them, by the names the rest
of loco uses: the `arch` of a row, a checkpoint's pipeline class, a plan's cost variant."""

import pytest

from harness.models import ModelLoadError, load_model, registry
from harness.models.registry import Architecture


def test_every_architecture_module_is_found_oldest_first():
    import pkgutil

    import harness.models as package

    modules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    assert {"sd15", "deepfloyd_if", "sdxl", "sd3"} <= modules
    # every module that declares an architecture is found, with no list of them anywhere
    assert {a.adapter.__module__.rpartition(".")[2] for a in registry.architectures()} <= modules
    assert [n for n in registry.names() if n in ("sd15", "if", "sdxl", "sd3")] == ["sd15", "if", "sdxl", "sd3"]
    released = [a.released for a in registry.architectures()]
    assert released == sorted(released)
    assert registry.for_pipeline("StableDiffusionXLPipeline").name == "sdxl"
    assert registry.for_variant("sd21").name == "sd15"  # SD2.x: a cost variant of the SD1.x module
    assert registry.get("flux") is None and registry.for_pipeline("FluxPipeline") is None


def test_a_name_registers_once():
    sd15 = registry.get("sd15")
    assert registry.register(sd15) is sd15  # the module imported again: the same declaration
    with pytest.raises(ValueError, match="architecture 'sd15' is registered twice"):
        registry.register(Architecture(**{**sd15.__dict__, "title": "another"}))


def test_an_unknown_builder_name_lists_the_registered_ones():
    tiny = ", ".join(f"tiny:{a.name}" for a in registry.architectures())
    with pytest.raises(ModelLoadError, match=f"unknown tiny model; expected one of {tiny}$"):
        load_model("tiny:flux")
    full = ", ".join(f"random:{a.name}" for a in registry.architectures() if a.fullsize)
    assert full.startswith("random:sd15, random:sdxl")
    with pytest.raises(ModelLoadError, match=f"unknown full-size random model; expected one of {full}$"):
        load_model("random:sd3")
