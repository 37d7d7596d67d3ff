"""FLUX.1-dev (`harness.models.flux`): the shared architecture specification on `tiny:flux` — no CFG batch
(guidance is an embedding), patching at both block kinds — plus what is particular to FLUX: the joint
sequence of the single-stream blocks, text first, of which a patch copies the text slice only."""

import pytest
import torch

from harness.generate import generate_rows
from harness.interventions import KVSwap, Sample
from tests.conftest import tiny
from tests.models.architecture_tester import A, ArchitectureTester, B, quick, refused_edit


class TestFlux(ArchitectureTester):
    arch = "flux"
    planted = ("joint_attn#7", "single_attn#20")  # one of each block kind (no paper localized FLUX blocks)


def keys_seen(adapter, site: str, rows) -> torch.Tensor:
    """The keys the attention at `site` computes with (after every hook on its projections), first step."""
    seen = []
    attn = adapter.module(site)
    handle = attn.norm_k.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    try:
        generate_rows(adapter, rows, quick(adapter))
    finally:
        handle.remove()
    return seen[0].flatten(2)  # (rows, sequence, heads × head_dim)


def test_a_single_stream_patch_copies_the_donors_text_slice_and_keeps_the_rows_image_tokens():
    adapter = tiny("flux")
    site = adapter.sites.resolve("single_attn#5").name
    text = adapter.t5_tokens  # the joint sequence: text first, then the image tokens
    assert adapter.text_tokens(site) == (0, text) and adapter.kv_projection_names(site) == ("to_k", "to_v")
    donor, control, patched = keys_seen(adapter, site, [Sample(B, 0), Sample(A, 0),
                                                        Sample(A, 0, swaps=(KVSwap((site,), B, mode="patch"),))])
    assert donor.shape[0] == text + (quick(adapter).height // adapter.pipe.vae_scale_factor // 2) ** 2
    assert torch.equal(patched[:text], donor[:text]) and not torch.equal(patched[:text], control[:text])
    assert torch.equal(patched[text:], control[text:]) and not torch.equal(donor[text:], control[text:])


def test_a_dual_stream_patch_copies_the_text_side_projections():
    adapter = tiny("flux")
    site = adapter.sites.resolve("joint_attn#3").name
    assert adapter.text_tokens(site) is None and adapter.kv_projection_names(site) == ("add_k_proj", "add_v_proj")


@pytest.mark.parametrize("method", ["locoedit", "uce", "time"])
def test_closed_form_edits_are_refused_saying_what_is_missing(method, tmp_path):
    message = refused_edit("flux", method, tmp_path / "out")
    assert message.startswith(f"edit: {method} cannot edit FLUX.1-dev models: it rewrites to_k/to_v of "
                              "cross-attention layers that read the prompt embeddings")
    assert "text stream changes block to block" in message and "same to_k/to_v" in message
