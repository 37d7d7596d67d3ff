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
    assert {"pixart", "pixart_sigma", "sana", "flux", "flux_schnell", "sd35"} <= set(registry.names())
    assert released == sorted(released)
    assert registry.for_pipeline("StableDiffusionXLPipeline").name == "sdxl"
    assert registry.for_variant("sd21").name == "sd15"  # SD2.x: a cost variant of the SD1.x module
    assert registry.for_variant("sd35_large").name == "sd35"
    assert registry.get("nosucharch") is None and registry.for_pipeline("NoSuchPipeline") is None


def test_architectures_sharing_a_pipeline_class_claim_their_checkpoints_by_the_denoiser_config():
    assert registry.for_pipeline("FluxPipeline", {"guidance_embeds": True}).name == "flux"  # FLUX.1-dev
    assert registry.for_pipeline("FluxPipeline", {"guidance_embeds": False}).name == "flux_schnell"
    assert registry.for_pipeline("StableDiffusion3Pipeline", {"qk_norm": None}).name == "sd3"
    assert registry.for_pipeline("StableDiffusion3Pipeline", {"qk_norm": "rms_norm"}).name == "sd35"


def test_a_name_registers_once():
    sd15 = registry.get("sd15")
    assert registry.register(sd15) is sd15  # the module imported again: the same declaration
    with pytest.raises(ValueError, match="architecture 'sd15' is registered twice"):
        registry.register(Architecture(**{**sd15.__dict__, "title": "another"}))


def test_an_unknown_builder_name_lists_the_registered_ones():
    tiny = ", ".join(f"tiny:{a.name}" for a in registry.architectures())
    with pytest.raises(ModelLoadError, match=f"unknown tiny model; expected one of {tiny}$"):
        load_model("tiny:nosucharch")
    full = ", ".join(f"random:{a.name}" for a in registry.architectures() if a.fullsize)
    assert full.startswith("random:sd15, random:sdxl")
    with pytest.raises(ModelLoadError, match=f"unknown full-size random model; expected one of {full}$"):
        load_model("random:sd3")
