"""Drift between two runs of one job is a paired comparison: both runs share prompts, seeds and initial
noise, so a shift far smaller than the spread across prompts is still detected, as it would not be if the
two runs were treated as independent samples."""

import numpy as np

from analysis.effects import DESIGN, GroupData, GroupRanking, rank_group
from analysis.regress import drift_rows
from analysis.selection import Rule

RULE = Rule("locogen", "style", "clip_score", "mean", -1, "control", "top", "test")


def ranking(values: np.ndarray, prompts: list[str]) -> GroupRanking:
    variants = [{k: None for k in DESIGN} | {"variant": "cross_attn#0", "site": "cross_attn#0", "site_index": 0}]
    data = GroupData(variants, values[None, None, :], np.zeros((1, len(prompts))), np.array(prompts, dtype=object),
                     np.array([len(prompts)]))
    return GroupRanking("run", "locogen", "style", "", RULE, **rank_group(data, RULE, n_boot=500, seed=0))


def test_a_small_shift_shared_by_every_prompt_is_a_paired_drift():
    rng = np.random.default_rng(1)
    prompts = [f"p{i:02d}" for i in range(24)]
    base_effect = rng.normal(-0.2, 0.3, size=24)  # effects spread widely across prompts
    base, cand = ranking(base_effect, prompts), ranking(base_effect + 0.05, prompts)  # each prompt moves by +0.05
    (drift,) = drift_rows(base, cand, ["cross_attn#0"], limit=0.01)
    assert drift["interval"] == "paired" and drift["ci_low"] > 0 and abs(drift["drift"] - 0.05) < 1e-12
    # as independent samples the same shift is lost in the spread across prompts
    other = ranking(base_effect + 0.05, [p + "x" for p in prompts])
    assert drift_rows(base, other, ["cross_attn#0"], limit=0.01) == []


def test_the_same_run_twice_never_drifts():
    prompts = [f"p{i}" for i in range(10)]
    values = np.linspace(-1, 1, 10)
    assert drift_rows(ranking(values, prompts), ranking(values, prompts), ["cross_attn#0"], limit=0.0) == []
