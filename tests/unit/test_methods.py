"""A job becomes a list of variants: LocoGen windows, patching windows × step starts, trace restores."""

import pytest

from harness.jobs import JobError, load_job
from harness.methods import bind, plan_variants, references
from harness.run.plan import check_step_window
from tests.conftest import tiny

PROMPT = {"prompt": "a house in the style of van gogh", "target": "a house", "attribute": "style", "concept": "van gogh"}


def job(**kw):
    return load_job({"name": "t", "method": "locogen", "prompts": [PROMPT], **kw})


def test_locogen_windows_cover_every_start_0_to_M_minus_m():
    variants = plan_variants(job(window=3), tiny("sd15").sites)
    assert [v.window_start for v in variants] == list(range(16 - 3 + 1))
    assert all(v.window_size == 3 for v in variants)
    assert variants[8].label == "cross_attn#8-10"


def test_default_sites_are_the_text_attention_layers():
    assert {v.kind for v in plan_variants(job(), tiny("sd3").sites)} == {"joint_attn"}
    assert len(plan_variants(job(), tiny("if").sites)) == 22


def test_patching_sweeps_step_starts_and_records_them_in_labels():
    variants = plan_variants(job(method="attn_patch", step_start=[0, 4]), tiny("sd15").sites)
    assert len(variants) == 32
    assert variants[16].label == "cross_attn#0@s4" and variants[16].step_start == 4


def test_causal_trace_restores_denoiser_sites_and_text_sites_per_position():
    spec = job(method="causal_trace", sites={"kind": ["resnet", "text_self_attn"]})
    variants = plan_variants(spec, tiny("sd15").sites)
    text = [v for v in variants if v.kind == "text_self_attn"]
    # P1's four token positions: first, middle and last subject token, and the last token
    assert len(text) == 4 * len(tiny("sd15").sites.of_kind("text_self_attn"))
    assert {v.position for v in text} == {"first_subject", "middle_subject", "last_subject", "last"}
    assert [r.label for r in references(spec)] == ["control", "corrupted"]


def test_locogen_on_a_non_text_site_is_an_error():
    with pytest.raises(JobError, match="is a resnet site; method 'locogen' intervenes on cross_attn or joint_attn"):
        plan_variants(job(sites={"kind": "resnet"}), tiny("sd15").sites)


def test_window_larger_than_the_selection_is_an_error():
    with pytest.raises(JobError, match="window: 4 is larger than the 3 selected sites"):
        plan_variants(job(window=4, sites={"kind": "cross_attn", "index": "0-2"}), tiny("sd15").sites)


def test_unknown_site_in_a_job_is_an_error_with_close_names():
    with pytest.raises(JobError, match="closest"):
        plan_variants(job(sites=["unet.mid_block.attentions.0.transformer_blocks.0.attn"]), tiny("sd15").sites)


def test_a_name_glob_keeps_the_sites_the_method_applies_to_and_an_exact_name_of_another_kind_is_an_error():
    variants = plan_variants(job(sites=["unet.up_blocks.1.*"]), tiny("sd15").sites)
    assert [v.site for v in variants] == [f"unet.up_blocks.1.attentions.{i}.transformer_blocks.0.attn2"
                                          for i in range(3)]
    with pytest.raises(JobError, match="is a self_attn site; method 'locogen' intervenes on"):
        plan_variants(job(sites=["unet.up_blocks.1.attentions.0.transformer_blocks.0.attn1"]), tiny("sd15").sites)


def test_bound_rows():
    spec = job(method="attn_patch", step_start=2, heads=[0])
    variant = plan_variants(spec, tiny("sd15").sites)[5]
    row = bind(variant, spec, spec.prompts[0], seed=7, mode="inject")
    (swap,) = row.swaps
    assert (row.prompt, row.seed, swap.source, swap.steps.start, swap.heads, swap.branch) == (
        PROMPT["prompt"], 7, "a house", 2, (0,), "both")
    target_ref = bind(references(spec)[1], spec, spec.prompts[0], seed=7, mode="inject")
    assert target_ref.is_plain and target_ref.prompt == "a house"


def test_step_start_must_fall_on_one_of_the_samplers_denoising_steps():
    calls = tiny("sd15").denoiser_calls(10)  # PNDM: one more call than inference steps
    check_step_window(job(method="attn_patch", steps=10, step_start=calls - 1), calls)  # the last step is fine
    with pytest.raises(JobError, match=f"step_start: {calls} is not below the {calls} denoising steps"):
        check_step_window(job(method="attn_patch", steps=10, step_start=calls), calls)


def test_windows_slide_only_over_consecutive_layers_of_the_selection():
    variants = plan_variants(job(window=2, sites={"kind": "cross_attn", "index": [0, 1, 2, 5, 6]}), tiny("sd15").sites)
    assert [v.label for v in variants] == ["cross_attn#0-1", "cross_attn#1-2", "cross_attn#5-6"]
    assert all(v.indices == tuple(range(v.indices[0], v.indices[0] + 2)) for v in variants)


def test_a_selection_with_no_consecutive_window_is_refused_naming_the_missing_layers():
    with pytest.raises(JobError, match=r"window: no 2 consecutive layers in the selection \(indices 4-7 are missing\)"):
        plan_variants(job(window=2, sites={"kind": "cross_attn", "index": [3, 8]}), tiny("sd15").sites)


def test_causal_trace_refuses_heads():
    with pytest.raises(JobError, match="heads: causal tracing restores a site's whole output"):
        job(method="causal_trace", heads=[0])


def test_causal_trace_restores_in_the_step_window_and_records_it():
    spec = job(method="causal_trace", sites={"kind": "resnet", "index": [3]}, step_start=[0, 4], step_end=8)
    full, late = plan_variants(spec, tiny("sd15").sites)
    assert (full.label, late.label) == ("resnet#3@s0", "resnet#3@s4")
    from harness.methods import get_method

    restore = bind(late, spec, spec.prompts[0], 0, None).restores[0]
    assert (restore.steps.start, restore.steps.end) == (4, 8)
    design = get_method("causal_trace").design(late, spec, 10, None)
    assert (design["step_start"], design["step_end"], design["steps_patched"]) == (4, 8, 4)


def test_causal_trace_refuses_a_step_window_on_text_encoder_sites():
    spec = job(method="causal_trace", sites={"kind": "text_mlp"}, step_start=2)
    with pytest.raises(JobError, match="step_start/step_end: 'text_encoder.* is a text-encoder site"):
        plan_variants(spec, tiny("sd15").sites)


def test_rows_record_the_cfg_branch_actually_intervened_on():
    from harness.methods import get_method

    spec = job(method="attn_patch")  # the job asks for both halves (P3's default)
    assert spec.effective_branch == "both"
    assert get_method("attn_patch").applied_branch(spec, "inject") == "cond"  # injection swaps cond only
    assert get_method("attn_patch").applied_branch(spec, "patch") == "both"
    assert get_method("locogen").applied_branch(job(), "inject") == "cond"


def test_causal_trace_restores_both_cfg_halves_unless_the_job_says_cond():
    # the clean run a state is copied from has both halves (issue 16: cond-only restores broke the image)
    from harness.methods import get_method

    sites = tiny("sd15").sites
    trace = job(method="causal_trace", sites={"kind": ["resnet", "text_mlp"], "index": 0}, positions=["last"])
    resnet, text = plan_variants(trace, sites)
    assert trace.effective_branch == "both"
    assert bind(resnet, trace, trace.prompts[0], 0, None).restores[0].branch == "both"
    cond = job(method="causal_trace", sites={"kind": "resnet", "index": 0}, branch="cond")
    assert bind(plan_variants(cond, sites)[0], cond, cond.prompts[0], 0, None).restores[0].branch == "cond"
    # a text-encoder restore changes the conditional prompt embedding only, and its rows say so
    assert get_method("causal_trace").design(text, trace, 10, None)["branch"] == "cond"
    assert "branch" not in get_method("causal_trace").design(resnet, trace, 10, None)  # the worker's: both
    # the default means both halves, so a run of the old default (cond) is never resumed into
    both, old = (trace.model_copy(update={"branch": b}) for b in ("both", "cond"))
    assert trace.fingerprint() == both.fingerprint() != old.fingerprint()


def test_noise_draws_repeat_every_restore_and_the_corrupted_row_with_their_own_noise_seed():
    sites = tiny("sd15").sites
    spec = job(method="causal_trace", sites={"kind": "resnet", "index": "0-1"}, noise_draws=3, noise_seed=5)
    variants = plan_variants(spec, sites)
    assert [(v.label, v.noise_draw) for v in variants] == [(r, d) for r in ("resnet#0", "resnet#1") for d in range(3)]
    assert len({v.key for v in variants}) == 6  # row and unit ids tell the draws apart; the label pools them
    assert [(r.role, r.noise_draw) for r in references(spec)] == [
        ("control", None), ("corrupted", 0), ("corrupted", 1), ("corrupted", 2)]
    seeds = [bind(v, spec, spec.prompts[0], 0, None).corruption.seed for v in variants[:3]]
    assert seeds == [5, 6, 7]  # draw d: noise seed noise_seed + d
    single = job(method="causal_trace", sites={"kind": "resnet", "index": "0-1"}, noise_seed=5)
    assert [v.key for v in plan_variants(single, sites)] == ["resnet#0", "resnet#1"]  # one draw: ids as before
    with pytest.raises(JobError, match="noise_draws"):
        job(method="causal_trace", noise_draws=0)


def test_loco_plan_shows_what_noise_draws_cost():
    from harness.preflight import plan

    one = plan(job(method="causal_trace", sites={"kind": "resnet", "index": "0-1"}, model="tiny:sd15"))
    three = plan(job(method="causal_trace", sites={"kind": "resnet", "index": "0-1"}, model="tiny:sd15",
                     noise_draws=3))
    assert (one.generations, three.generations) == (1 * (2 + 2), 1 * (6 + 4))  # variants and corrupted × 3
    assert "variants         6 = 2 restores × 3 noise draws (+4 reference rows" in three.format()
