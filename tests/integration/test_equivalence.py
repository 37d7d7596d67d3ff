"""Batching is an implementation detail: a row's image must not depend on what else is in its batch."""

import numpy as np
import pytest
import torch

from harness.generate import GenerationConfig, branch_step, generate_rows
from harness.interventions import Corruption, KVSwap, Restore, Sample, StepWindow
from tests.conftest import mse, tiny

A = "a house in the style of van gogh"
B = "a red bicycle leaning on a wall"


def config(adapter) -> GenerationConfig:
    d = adapter.defaults
    return GenerationConfig(d.steps, d.guidance_scale, d.height, d.width)


def text_sites(adapter) -> list[str]:
    kind = "joint_attn" if adapter.arch == "sd3" else "cross_attn"
    return [s.name for s in adapter.sites.of_kind(kind)]


def plain_pipeline(adapter, prompt: str, seed: int) -> np.ndarray:
    d = adapter.defaults
    out = adapter.pipe(prompt, num_inference_steps=d.steps, guidance_scale=d.guidance_scale, height=d.height,
                       width=d.width, generator=torch.Generator().manual_seed(seed), output_type="np")
    return (np.asarray(out.images) * 255).round().astype(np.uint8)[0]


@pytest.mark.parametrize("arch", ["sd15", "sdxl", "if", "sd3"])
def test_an_unintervened_row_equals_the_plain_pipeline_exactly(arch):
    adapter = tiny(arch)
    images = generate_rows(adapter, [Sample(A, 3)], config(adapter))
    assert np.array_equal(images[0], plain_pipeline(adapter, A, 3))


@pytest.mark.parametrize("arch", ["sd15", "sdxl", "if", "sd3"])
def test_a_control_row_in_a_batch_matches_the_plain_pipeline_to_one_level(arch):
    # BLAS picks GEMM kernels by matrix size: the plain call's 2-row CFG batch rounds a few values
    # differently (~1e-7) from a larger batch, which can move a pixel by one uint8 level. Rows of the same
    # batch are bit-identical to each other (tests below), which is what effects are measured against.
    adapter = tiny(arch)
    sites = text_sites(adapter)
    rows = [Sample(A, 3), Sample(B, 3), Sample(A, 3, swaps=(KVSwap((sites[0],), B, mode="patch"),))]
    diff = generate_rows(adapter, rows, config(adapter))[0].astype(int) - plain_pipeline(adapter, A, 3)
    assert np.abs(diff).max() <= 1 and np.count_nonzero(diff) <= max(2, 0.001 * diff.size)


def test_identical_rows_of_one_batch_are_bit_identical():
    adapter = tiny("sdxl")
    images = generate_rows(adapter, [Sample(A, 4)] * 1 + [Sample(B, 4)] + [Sample(A, 4, swaps=(KVSwap(
        (text_sites(adapter)[0],), A),))] * 1, config(adapter), as_float=True)
    assert np.array_equal(images[0], images[2])  # swapping in the row's own prompt changes nothing


@pytest.mark.parametrize("arch", ["sd15", "sdxl", "if", "sd3"])
def test_a_batched_variant_equals_the_same_intervention_run_alone(arch):
    adapter = tiny(arch)
    sites = text_sites(adapter)
    mode = "inject" if adapter.kv_input_is_prompt_embeds else "patch"
    variant = Sample(A, 1, swaps=(KVSwap((sites[len(sites) // 2],), B, mode=mode, branch="both"),))
    others = [Sample(A, 1, swaps=(KVSwap((s,), B, mode=mode),)) for s in sites[:5]]
    batched = generate_rows(adapter, [Sample(A, 1), Sample(B, 1), *others, variant], config(adapter), as_float=True)[-1]
    anchors = [Sample(B, 1)] if mode == "patch" else []
    alone = generate_rows(adapter, [*anchors, variant], config(adapter), as_float=True)[-1]
    # GEMM rounding differs between batch sizes by ~1e-7; IF's pixel-space, thresholded DDPM sampler
    # amplifies it more than the latent models' VAEs do.
    assert np.abs(batched - alone).max() < (1e-3 if arch == "if" else 1e-5)
    assert mse(batched, generate_rows(adapter, [Sample(A, 1)], config(adapter), as_float=True)[0]) > 0


def test_swapping_every_cross_attention_layer_of_sd1_reproduces_the_target_image():
    adapter = tiny("sd15")
    everything = Sample(A, 2, swaps=(KVSwap(tuple(text_sites(adapter)), B),))
    images = generate_rows(adapter, [Sample(A, 2), Sample(B, 2), everything], config(adapter))
    assert np.array_equal(images[2], images[1])
    assert not np.array_equal(images[2], images[0])


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_injection_equals_donor_patching_where_the_text_stream_is_constant(arch):
    adapter = tiny(arch)
    sites = text_sites(adapter)[3:5]
    rows = [Sample(A, 0), Sample(B, 0), Sample(A, 0, swaps=(KVSwap(tuple(sites), B, mode="inject"),)),
            Sample(A, 0, swaps=(KVSwap(tuple(sites), B, mode="patch"),))]
    images = generate_rows(adapter, rows, config(adapter), as_float=True)
    assert np.abs(images[2] - images[3]).max() < 1e-6


def test_injection_differs_from_patching_in_sd3_joint_attention():
    # The text stream evolves through the joint blocks: B's prompt embeddings are not B's K/V at block 10.
    adapter = tiny("sd3")
    site = text_sites(adapter)[10]
    from torch.nn.functional import linear  # inject by hand: K/V computed from B's prompt embeddings

    b = adapter.encode([B])["prompt_embeds"]
    k_proj, v_proj = adapter.kv_modules(site)
    cond = 1  # row 0's conditional half in a [uncond, cond] batch of one row

    def inject(_module, _args, out, proj):
        out[cond] = linear(adapter.pipe.transformer.context_embedder(b)[0], proj.weight, proj.bias)
        return out

    handles = [p.register_forward_hook(lambda m, a, o, p=p: inject(m, a, o, p)) for p in (k_proj, v_proj)]
    try:
        injected = generate_rows(adapter, [Sample(A, 0)], config(adapter))[0]
    finally:
        for h in handles:
            h.remove()
    patched = generate_rows(adapter, [Sample(B, 0), Sample(A, 0, swaps=(KVSwap((site,), B, mode="patch"),))],
                            config(adapter))[1]
    assert mse(injected, patched) > 0


def test_step_start_gates_the_intervention_in_time():
    adapter = tiny("sd15")
    sites = tuple(text_sites(adapter))
    calls = adapter.denoiser_calls(config(adapter).steps)
    assert calls == config(adapter).steps + 1  # PNDM makes one extra denoiser call
    rows = [Sample(A, 0), Sample(B, 0)] + [Sample(A, 0, swaps=(KVSwap(sites, B, steps=StepWindow(s)),)) for s in (0, 4, calls)]
    images = generate_rows(adapter, rows, config(adapter))
    assert np.array_equal(images[4], images[0])  # starting after the last step: nothing is patched
    assert mse(images[2], images[0]) > mse(images[3], images[0]) > 0


def test_all_heads_equals_no_head_subset_and_one_head_is_partial():
    adapter = tiny("sd15")
    site = text_sites(adapter)[14]
    heads = adapter.module(site).heads
    rows = [Sample(A, 0), Sample(B, 0), Sample(A, 0, swaps=(KVSwap((site,), B),)),
            Sample(A, 0, swaps=(KVSwap((site,), B, heads=tuple(range(heads))),)),
            Sample(A, 0, swaps=(KVSwap((site,), B, heads=(0,)),))]
    images = generate_rows(adapter, rows, config(adapter))
    assert np.array_equal(images[2], images[3])
    assert 0 < mse(images[4], images[0]) and not np.array_equal(images[4], images[2])


def test_a_head_that_does_not_exist_is_an_error():
    adapter = tiny("sd15")
    site = text_sites(adapter)[0]
    with pytest.raises(ValueError, match="heads: head 99 does not exist"):
        generate_rows(adapter, [Sample(A, 0, swaps=(KVSwap((site,), B, heads=(99,)),))], config(adapter))


def test_corruption_changes_the_image_and_is_the_same_noise_in_every_row():
    adapter = tiny("sd15")
    corrupt = Corruption("van gogh", 3.0, seed=5)
    rows = [Sample(A, 0), Sample(A, 0, corruption=corrupt), Sample(A, 1, corruption=corrupt)]
    again = [Sample(A, 1, corruption=corrupt)]
    images = generate_rows(adapter, rows, config(adapter), as_float=True)
    alone = generate_rows(adapter, again, config(adapter), as_float=True)[0]
    assert np.abs(images[1] - images[0]).max() > 1e-2
    # Same noise whatever the batch: equal up to GEMM rounding across batch sizes (~1e-7), far below
    # the effect of a different noise draw.
    assert np.abs(images[2] - alone).max() < 1e-5
    other = Corruption("van gogh", 3.0, seed=6)
    assert np.abs(generate_rows(adapter, [Sample(A, 1, corruption=other)], config(adapter), as_float=True)[0]
                  - alone).max() > 1e-3


def test_restoring_a_text_encoder_state_changes_the_corrupted_image():
    adapter = tiny("sd15")
    corrupt = Corruption("van gogh", 3.0)
    site = adapter.sites.of_kind("text_self_attn")[0].name
    rows = [Sample(A, 0), Sample(A, 0, corruption=corrupt),
            Sample(A, 0, corruption=corrupt, restores=(Restore(site, "last_subject"),))]
    images = generate_rows(adapter, rows, config(adapter))
    assert not np.array_equal(images[2], images[1])


@pytest.mark.parametrize("arch", ["sd15", "sdxl", "sd3"])
def test_a_shared_prefix_branching_at_step_start_gives_the_same_images(arch):
    # Nothing acts before step 3, so rows with the same text and seed run as one row until then.
    adapter = tiny(arch)
    sites = text_sites(adapter)
    mode = "inject" if adapter.kv_input_is_prompt_embeds else "patch"
    rows = [Sample(A, 0), Sample(B, 0), Sample(A, 1), Sample(B, 1)]
    rows += [Sample(A, seed, swaps=(KVSwap((s,), B, mode=mode, branch="both", steps=StepWindow(start)),))
             for seed, start in ((0, 3), (1, 4)) for s in sites[:4]]
    assert branch_step(adapter, rows, config(adapter)) == 3
    full = generate_rows(adapter, rows, config(adapter), as_float=True, share_prefix=False)
    shared = generate_rows(adapter, rows, config(adapter), as_float=True, share_prefix=True)
    assert np.abs(full - shared).max() < 1e-4
    assert all(mse(shared[i], shared[0 if rows[i].seed == 0 else 2]) > 0 for i in range(4, len(rows)))


def test_no_branching_when_something_acts_from_step_0_or_the_pipeline_cannot_branch():
    sd15, deepfloyd = tiny("sd15"), tiny("if")
    now = [Sample(A, 0), Sample(A, 0, swaps=(KVSwap((text_sites(sd15)[0],), B),))]
    later = [Sample(A, 0), Sample(A, 0, swaps=(KVSwap((text_sites(sd15)[0],), B, steps=StepWindow(2)),))]
    assert branch_step(sd15, now, config(sd15)) == 0
    assert branch_step(sd15, later, config(sd15)) == 2
    assert branch_step(deepfloyd, later, config(deepfloyd)) == 0  # IFPipeline has no step-end callback
