"""Each paper's selection rule on hand-made runs with a known answer: per attribute, the right metric, the
right direction, paired with the right reference rows."""

import numpy as np
import pytest
from analysis_fixtures import make_run, swap_rows

from analysis.effects import rank_run
from analysis.runs import AnalysisError, open_run
from analysis.selection import rule_for
from analysis.threshold import split_prompts, widest_gap_threshold

PROMPTS = [f"p{k}" for k in range(6)]


def groups_by_label(run_dir, **kw):
    return {g.label: g for g in rank_run(open_run(run_dir), n_boot=300, **kw)}


def test_locogen_picks_lowest_clip_to_the_prompt_for_style_and_highest_to_the_target_for_facts(tmp_path):
    style = swap_rows(lambda i, p: -0.3 if i == 2 else 0.0, PROMPTS, [0, 1])
    # facts: layer 3 moves CLIP-to-target most (down), layer 1 is the one that shows the new fact (up)
    facts = swap_rows(lambda i, p: {1: 0.2, 3: -0.3}.get(i, 0.0), [f"f{k}" for k in range(6)], [0, 1],
                      attribute="fact", concept="president", metric="clip_t_target", control=0.5)
    groups = groups_by_label(make_run(tmp_path, "run", "locogen", style + facts))
    assert set(groups) == {"style", "style / van gogh", "fact", "fact / president"}
    assert groups["style"].variants[0].index == 2 and groups["style"].variants[0].selected
    assert groups["style"].rule.metric == "clip_t_prompt" and groups["style"].rule.sign == -1
    assert groups["fact"].variants[0].index == 1 and groups["fact"].rule.metric == "clip_t_target"
    assert groups["fact"].variants[0].effect == pytest.approx(0.2, abs=0.01)
    assert groups["fact"].variants[-1].index == 3
    assert groups["style"].separated and groups["style"].variants[0].p_top == 1.0


def test_attention_patching_ranks_by_ocr_f1_to_the_target_text_as_f1_of_means(tmp_path):
    rows = []
    for p in PROMPTS:
        rows.append({"role": "control", "variant": "control", "prompt_id": p, "seed": 0, "attribute": "text",
                     "ocr_char_p_target": 0.1, "ocr_char_r_target": 0.1, "ocr_char_f1_target": 0.1})
        for i in range(3):
            # site 1: alternating P=1,R=0.2 / P=0.2,R=1 → per-row F1 0.33 but F1 of means 0.6;
            # site 2: P = R = 0.5 on every row → 0.5 either way. P3's aggregate puts site 1 first.
            pr = {1: (1.0, 0.2) if p in PROMPTS[::2] else (0.2, 1.0), 2: (0.5, 0.5)}.get(i, (0.1, 0.1))
            f1 = 2 * pr[0] * pr[1] / (pr[0] + pr[1])
            rows.append({"role": "variant", "variant": f"cross_attn#{i}", "site": f"s{i}", "sites": [f"s{i}"],
                         "kind": "cross_attn", "site_index": i, "indices": [i], "prompt_id": p, "seed": 0,
                         "attribute": "text", "ocr_char_p_target": pr[0], "ocr_char_r_target": pr[1],
                         "ocr_char_f1_target": f1})
    (group,) = rank_run(open_run(make_run(tmp_path, "p3", "attn_patch", rows)), n_boot=200)
    assert group.rule.aggregate == "f1_of_means" and group.rule.metric == "ocr_char_f1_target"
    assert [v.index for v in group.variants] == [1, 2, 0]
    assert group.variants[0].value == pytest.approx(0.6) and group.variants[0].reference == pytest.approx(0.1)


def trace_rows(restores: dict[int, float], prompts, n_sites=6):
    """Causal tracing: corrupted CLIP 0.3; restoring site i brings it up by restores[i]."""
    return swap_rows(lambda i, p: restores.get(i, 0.0), prompts, [0, 1], n_sites=n_sites, attribute="object",
                     concept="apple", metric="clip_t_prompt", control=0.3, reference_role="corrupted", noise=0.005)


def test_causal_tracing_selects_the_states_above_a_threshold_chosen_on_held_out_prompts(tmp_path):
    prompts = [f"p{k}" for k in range(9)]
    groups = groups_by_label(make_run(tmp_path, "ct", "causal_trace", trace_rows({1: 0.3, 4: 0.25}, prompts), n_sites=6))
    group = groups["object"]
    assert group.rule.reference == "corrupted" and group.rule.select == "threshold"
    assert {v.index for v in group.variants if v.selected} == {1, 4}
    val, test = set(group.threshold["validation_prompts"]), set(group.threshold["test_prompts"])
    assert len(val) == 3 and len(test) == 6 and not val & test
    assert 0.01 < group.threshold["value"] < 0.25
    assert all(v.n_prompts == 6 for v in group.variants)  # intervals from the test prompts only


def test_a_single_prompt_trace_warns_that_nothing_was_held_out(tmp_path):
    groups = groups_by_label(make_run(tmp_path, "ct1", "causal_trace", trace_rows({2: 0.3}, ["p0"]), n_sites=6))
    assert {v.index for v in groups["object"].variants if v.selected} == {2}
    assert "nothing held out" in groups["object"].threshold["how"]
    assert "same single prompt" in groups["object"].warning


def test_the_split_and_the_gap_rule():
    val, test = split_prompts([f"p{k}" for k in range(40)])
    assert len(val) == 10 and len(test) == 30
    assert widest_gap_threshold(np.array([0.31, 0.29, 0.02, -0.01])) == pytest.approx(0.155)


def test_indistinguishable_top_candidates_are_flagged(tmp_path):
    rng = np.random.default_rng(5)
    noise = {p: rng.normal(0, 0.1) for p in PROMPTS}
    rows = swap_rows(lambda i, p: -0.3 + (noise[p] if i == 0 else -noise[p]) if i < 2 else 0.0, PROMPTS, [0])
    group = groups_by_label(make_run(tmp_path, "tie", "locogen", rows))["style"]
    assert not group.separated and group.gap_ci[0] <= 0 <= group.gap_ci[1]
    assert "not separated" in group.warning
    assert max(v.p_top for v in group.variants) < 0.95


def test_a_run_without_the_papers_metric_falls_back_to_mse_and_says_so(tmp_path):
    rule = rule_for("locogen", "style", ["mse", "psnr", "prompt"])
    assert rule.metric == "mse" and rule.sign == 1 and rule.fallback and "fallback" in rule.description
    assert rule_for("causal_trace", "object", ["mse"]).sign == -1  # restoring: closest to the clean image
    with pytest.raises(AnalysisError, match="did you mean 'clip_t_prompt'"):
        rule_for("locogen", "style", ["clip_t_prompt"], metric="clip_t_promt")


def test_a_toyworld_run_scored_by_probes_ranks_by_the_probes_analog_of_the_papers_metric(tmp_path):
    # LocoGen on colour: window 2's target prompt takes the prompt's colour away (P(red) falls most)
    swap = swap_rows(lambda i, p: -0.6 if i == 2 else -0.05, PROMPTS, [0, 1], attribute="color", concept="red",
                     metric="probe_p_prompt", control=0.9)
    (group, *_) = rank_run(open_run(make_run(tmp_path, "tw", "locogen", swap)), n_boot=200)
    assert group.rule.metric == "probe_p_prompt" and group.rule.sign == -1 and not group.rule.fallback
    assert "in place of clip_t_prompt" in group.rule.description and group.variants[0].index == 2
    assert rule_for("attn_patch", "text", ["probe_p_target", "mse"]).metric == "probe_p_target"
    assert rule_for("causal_trace", "shape", ["probe_p_prompt", "mse"]).sign == 1  # restores bring P(label) back
    assert rule_for("locogen", "style", ["clip_t_prompt", "probe_p_prompt"]).metric == "clip_t_prompt"  # paper first
