"""SD3.5 (`harness.models.sd35`): the shared architecture specification on `tiny:sd35` (SD3.5-medium's layout:
q/k norm, an image-only `attn2` in blocks 0–12), plus what is particular to SD3.5: `attn2` is a self-attention
site that text never enters, and SD3.5 checkpoints load as SD3.5, not SD3."""

import pytest
import torch

from harness.generate import generate_rows
from harness.interventions import Sample
from harness.models import load_model, registry
from tests.conftest import tiny
from tests.models.architecture_tester import A, ArchitectureTester, B, quick, refused_edit


class TestSD35(ArchitectureTester):
    arch = "sd35"
    planted = ("joint_attn#5",)  # a block with attn2 (no paper localized SD3.5 blocks)
    empty_buffers = True  # its 384² positional embedding would take ~1 GB and half a minute to compute


def test_attn2_is_image_only_self_attention_never_a_text_site():
    table = tiny("sd35").sites
    attn2 = [s for s in table.sites if s.name.endswith(".attn2")]
    assert [s.name for s in attn2] == [f"transformer.transformer_blocks.{i}.attn2" for i in range(13)]
    assert {s.kind for s in attn2} == {"self_attn"} and "cross_attn" not in table.kinds()


def test_a_planted_model_leaves_attn2_as_it_was_and_its_output_does_not_read_the_prompt():
    planted = load_model("tiny:sd35+planted=joint_attn#5", "cpu")
    block = planted.module("transformer.transformer_blocks.5")
    original = tiny("sd35").module("transformer.transformer_blocks.5")
    assert all(torch.equal(a, b) for a, b in zip(block.attn2.parameters(), original.attn2.parameters()))
    outputs = []  # attn2 at block 5 in the first step, rows A and B: same image tokens in, same output
    handle = block.attn2.register_forward_hook(lambda _m, _a, out: outputs.append(out.clone()))
    try:
        generate_rows(planted, [Sample(A, 0), Sample(B, 0)], quick(planted))
    finally:
        handle.remove()
    first = outputs[0]  # [uncond A, uncond B, cond A, cond B]: the image stream before block 5 reads no text
    assert torch.equal(first[2], first[3])


def test_sd3_and_sd35_checkpoints_are_told_apart_by_the_transformer_config():
    sd3, sd35 = dict(tiny("sd3").denoiser.config), dict(tiny("sd35").denoiser.config)
    assert registry.for_pipeline("StableDiffusion3Pipeline", sd3).name == "sd3"
    assert registry.for_pipeline("StableDiffusion3Pipeline", sd35).name == "sd35"
    large = {**sd3, "qk_norm": "rms_norm", "num_layers": 38}  # SD3.5-large: no attn2, q/k norm
    assert registry.for_pipeline("StableDiffusion3Pipeline", large).name == "sd35"
    assert registry.for_pipeline("StableDiffusion3Pipeline").name == "sd3"  # no config: the class's default


@pytest.mark.parametrize("method", ["locoedit", "uce", "time"])
def test_closed_form_edits_are_refused_saying_what_is_missing(method, tmp_path):
    message = refused_edit("sd35", method, tmp_path / "out")
    assert message.startswith(f"edit: {method} cannot edit SD3.5 models") and "no fixed text K/V" in message
