"""What a causal-tracing restore copies depends on the site: a ResNet's output (and an IF AttnAddedKV
attention's) already holds the residual, so restoring it restores the hidden *state*; attention and
feed-forward outputs are *contributions* added to a residual stream outside them. At a state site both
can be restored, and each has a known answer."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from harness.generate import GenerationConfig, generate_rows
from harness.interventions import Corruption, Restore, Sample
from harness.jobs import JobError, load_job
from harness.methods import get_method, plan_variants, references
from harness.sites import CONTRIBUTION, STATE
from tests.conftest import mse, tiny

A = "a house in the style of van gogh"
CORRUPT = Corruption("van gogh", 3.0)


def config(adapter) -> GenerationConfig:
    d = adapter.defaults
    return GenerationConfig(d.steps, d.guidance_scale, d.height, d.width)


def restored(site: str, what: str | None) -> list[Sample]:
    """Clean, corrupted, and corrupted with `site` restored (all steps, conditional half)."""
    return [Sample(A, 0), Sample(A, 0, corruption=CORRUPT),
            Sample(A, 0, corruption=CORRUPT, restores=(Restore(site, what=what),))]


def test_the_site_table_says_what_each_kind_of_output_holds():
    sd15, deepfloyd, sd3 = tiny("sd15").sites, tiny("if").sites, tiny("sd3").sites
    assert {(s.output, s.contribution) for s in sd15.of_kind("resnet")} == {(STATE, "conv2")}
    for kind in ("self_attn", "cross_attn", "ff", "text_self_attn", "text_mlp"):
        assert {(s.output, s.contribution) for s in sd15.of_kind(kind)} == {(CONTRIBUTION, None)}, kind
    # IF's AttnAddedKV processor adds the attention's input back: its output is the state
    assert {(s.output, s.contribution) for s in deepfloyd.of_kind("cross_attn")} == {(STATE, "to_out.0")}
    assert {s.output for s in sd3.of_kind("joint_attn") + sd3.of_kind("ff_context")} == {CONTRIBUTION}


@pytest.mark.parametrize("arch", ["sdxl", "if"])
def test_restoring_the_state_of_the_last_site_reproduces_the_clean_image_exactly(arch):
    # Nothing after the last site reads anything but its output, so with its state restored at every
    # step the corrupted row follows the clean trajectory bit for bit; its contribution alone does not
    # (the corrupted input still passes through the shortcut).
    adapter = tiny(arch)
    last = [s for s in adapter.sites.sites if s.component == adapter.denoiser_name][-1]
    assert last.kind == "resnet" and last.output == STATE
    images = generate_rows(adapter, restored(last.name, STATE) + restored(last.name, CONTRIBUTION)[2:],
                           config(adapter), as_float=True)
    clean, corrupted, state, contribution = images
    assert np.abs(corrupted - clean).max() > 1e-2
    assert np.array_equal(state, clean)
    assert np.abs(contribution - clean).max() > 1e-3
    # the site's plain output is its state: restoring "the output" (P1) is the state restore here
    assert np.array_equal(generate_rows(adapter, restored(last.name, None), config(adapter), as_float=True)[2],
                          clean)


def record(module: torch.nn.Module, pre: bool, store: list):
    if pre:
        return module.register_forward_pre_hook(lambda _m, args: store.append(args[0].detach().clone()))
    return module.register_forward_hook(lambda _m, _a, out: store.append(out.detach().clone()))


@pytest.mark.parametrize("what", [STATE, CONTRIBUTION])
def test_a_resnet_restore_copies_the_state_or_only_the_residual_branch(what):
    # down_blocks.0.resnets.0 keeps its width (no shortcut conv): output = (x + conv2(...)) / s. Its output
    # is what attentions.0 reads. State: the restored row's output is the clean row's. Contribution: the
    # restored row keeps its own x, so outputs differ from the clean row's by exactly (x_r - x_clean) / s.
    adapter = tiny("sd15")
    resnet = adapter.module("unet.down_blocks.0.resnets.0")
    assert resnet.conv_shortcut is None and not (resnet.up or resnet.down)
    inputs, outputs = [], []
    handles = [record(resnet, True, inputs), record(adapter.module("unet.down_blocks.0.attentions.0"), True, outputs)]
    try:
        generate_rows(adapter, restored("unet.down_blocks.0.resnets.0", what), config(adapter))
    finally:
        for handle in handles:
            handle.remove()
    clean, row = 3 + 0, 3 + 2  # CFG layout [uncond × 3, cond × 3]; the restore acts on the cond half
    assert len(inputs) == len(outputs) == adapter.denoiser_calls(config(adapter).steps)
    moved = max(float((x[row] - x[clean]).abs().max()) for x in inputs)
    assert moved > 1e-3  # the corrupted trajectory feeds the site another input
    for x, out in zip(inputs, outputs):
        if what == STATE:
            assert torch.equal(out[row], out[clean])
        else:
            expected = (x[row] - x[clean]) / resnet.output_scale_factor
            assert torch.allclose(out[row] - out[clean], expected, atol=1e-5)


def job(**keys):
    return load_job({"name": "t", "method": "causal_trace", "model": "tiny:sd15",
                     "prompts": [{"prompt": A, "attribute": "style", "concept": "van gogh"}], **keys})


def test_the_job_chooses_what_is_restored_and_refuses_the_state_of_a_contribution_site():
    sites = tiny("sd15").sites
    default = plan_variants(job(sites={"kind": ["resnet", "cross_attn"], "index": 0}), sites)
    assert {v.kind: v.restore for v in default} == {"resnet": STATE, "cross_attn": CONTRIBUTION}  # P1: the output
    chosen = plan_variants(job(sites={"kind": "resnet", "index": 0}, restore="contribution"), sites)
    assert [v.restore for v in chosen] == [CONTRIBUTION]
    with pytest.raises(JobError, match=r"restore: 'unet\.down_blocks\.0\.attentions\.0\.transformer_blocks\.0\."
                                       r"attn2' is a cross_attn site whose output is a contribution"):
        plan_variants(job(sites={"kind": "cross_attn", "index": 0}, restore="state"), sites)
    with pytest.raises(JobError, match="restore: got 'residual'"):
        job(restore="residual")


@pytest.mark.parametrize("label", ["resnet#0", "resnet#20"])
def test_restoring_an_intermediate_state_under_guidance_moves_the_image_toward_the_clean_one(label):
    # Under CFG the corrupted row's unconditional half follows the corrupted latents. The clean run has
    # both halves, and the default restore copies both; copying the conditional half alone mixes the
    # guided difference out of two trajectories and lands *farther* from the clean image than the
    # corrupted run (issue 16: toyworld resnet#7, MSE 4080 against 92). resnet#0 is the first state of the
    # UNet, resnet#20 the second-to-last (attention and ResNet layers follow both).
    adapter = tiny("sd15")
    assert adapter.defaults.guidance_scale > 1
    spec = job(sites=[label])  # the job's defaults: branch, σ rule, what is restored
    variant = plan_variants(spec, adapter.sites)[0]
    rows = [Sample(A, 0), *(get_method("causal_trace").bind(v, spec, spec.prompts[0], 0, None)
                            for v in (*references(spec)[1:], variant))]
    cond_only = replace(rows[-1], restores=(replace(rows[-1].restores[0], branch="cond"),))
    clean, corrupted, restored, half = generate_rows(adapter, [*rows, cond_only], config(adapter), as_float=True)
    assert mse(restored, clean) < 0.9 * mse(corrupted, clean)
    assert mse(half, clean) > mse(corrupted, clean)  # the cond-only restore: what the default used to do
    assert rows[-1].restores[0].branch == "both" and rows[-1].restores[0].what == STATE
