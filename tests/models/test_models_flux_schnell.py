"""FLUX.1-schnell (`harness.models.flux`, registered beside dev): the shared specification on
`tiny:flux_schnell` — no guidance input at all, a static-shift scheduler, its own sampler defaults."""

from tests.conftest import tiny
from tests.models.architecture_tester import ArchitectureTester


class TestFluxSchnell(ArchitectureTester):
    arch = "flux_schnell"
    planted = ("single_attn#37",)  # the last block (dev's tester plants one of each kind)


def test_schnell_has_no_guidance_input_and_its_own_defaults():
    adapter = tiny("flux_schnell")
    assert not adapter.denoiser.config.guidance_embeds and adapter.denoiser.time_text_embed.__class__.__name__ == \
        "CombinedTimestepTextProjEmbeddings"
    assert adapter.paper_defaults.steps == 4 and adapter.paper_defaults.guidance_scale == 0.0
