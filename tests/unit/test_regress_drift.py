"""Drift between two runs of one job, on hand-made groups with a known answer:

* runs that share prompts, seeds and noise are compared paired, so a shift far smaller than the spread
  across prompts is still found; runs over other prompts (or other seeds) are unpaired and it is not;
* a drift must be large in effect units (a share of the strongest effect) — a consistent 6e-6 is not a
  regression, whatever its p-value;
* over many sites, Holm's correction keeps seed noise from being called drift."""

import numpy as np
import pytest

from analysis.effects import DESIGN, GroupData, GroupRanking, rank_group
from analysis.regress import Thresholds, compare_groups, drift_rows, paired_draws
from analysis.selection import Rule

RULE = Rule("locogen", "style", "clip_score", "mean", -1, "control", "top", "test")


def ranking(values: np.ndarray, prompts: list[str], seeds: list[int] | None = None) -> GroupRanking:
    """One group: values (V, R) of V variants over R rows (one per prompt; `seeds` per row, default 0)."""
    values = np.atleast_2d(values)
    variants = [{k: None for k in DESIGN} | {"variant": f"cross_attn#{i}", "site_index": i} for i in range(len(values))]
    keys = [(p, s, 0) for p, s in zip(prompts, seeds or [0] * len(prompts))]
    data = GroupData(variants, values[:, None, :], np.zeros((1, len(prompts))), np.array(prompts, dtype=object),
                     np.full(len(values), len(prompts)), keys)
    return GroupRanking("run", "locogen", "style", "", RULE, **rank_group(data, RULE, n_boot=500, seed=0))


def test_a_small_shift_shared_by_every_prompt_is_a_paired_drift():
    rng = np.random.default_rng(1)
    prompts = [f"p{i:02d}" for i in range(24)]
    base_effect = rng.normal(-0.2, 0.3, size=24)  # effects spread widely across prompts
    base, cand = ranking(base_effect, prompts), ranking(base_effect + 0.05, prompts)  # each prompt moves by +0.05
    assert paired_draws(base, cand) is not None
    (drift,) = drift_rows(base, cand, ["cross_attn#0"], Thresholds(), paired=True, limit=0.01)
    assert drift["interval"] == "paired" and drift["ci_low"] > 0 and abs(drift["drift"] - 0.05) < 1e-12
    # as independent samples the same shift is lost in the spread across prompts
    other = ranking(base_effect + 0.05, [p + "x" for p in prompts])
    assert paired_draws(base, other) is None
    assert drift_rows(base, other, ["cross_attn#0"], Thresholds(), paired=False, limit=0.01) == []


def test_other_seeds_are_not_paired_even_over_the_same_prompts():
    prompts = [f"p{i}" for i in range(10)]
    values = np.linspace(-1, 0, 10)
    assert paired_draws(ranking(values, prompts, [0] * 10), ranking(values, prompts, [2] * 10)) is None
    assert paired_draws(ranking(values, prompts, [0] * 10), ranking(values, prompts, [0] * 10)) is not None


def test_the_same_run_twice_never_drifts():
    prompts = [f"p{i}" for i in range(10)]
    values = np.linspace(-1, 1, 10)
    assert drift_rows(ranking(values, prompts), ranking(values, prompts), ["cross_attn#0"], Thresholds(),
                      paired=True, limit=0.0) == []


def test_a_tiny_consistent_drift_is_not_a_regression():
    # the A/A failure: every prompt's effect at a site that does nothing moved by ~6e-6
    prompts = [f"p{i:02d}" for i in range(12)]
    rng = np.random.default_rng(2)
    strong, idle = rng.normal(-0.8, 0.05, 12), rng.normal(0, 1e-6, 12)
    base, cand = ranking(np.stack([strong, idle]), prompts), ranking(np.stack([strong, idle + 6e-6]), prompts)
    g = compare_groups(base, cand, Thresholds(), paired=True)
    assert g.drift_limit == pytest.approx(0.25 * max(abs(strong.mean()), abs(strong.mean())))
    assert g.drifting == [] and g.same_top
    flagged = drift_rows(base, cand, ["cross_attn#1"], Thresholds(), paired=True, limit=0.0)
    assert [d["variant"] for d in flagged] == ["cross_attn#1"]  # significant, but far below the effect-unit limit


def test_holm_keeps_seed_noise_on_many_sites_from_being_drift():
    # 30 sites, each prompt's effect redrawn (seed noise) between the two runs: no site truly drifts
    prompts = [f"p{i:02d}" for i in range(10)]
    rng = np.random.default_rng(4)
    effects = rng.normal(0, 0.3, size=(30, 1))
    base = ranking(effects + rng.normal(0, 0.1, (30, 10)), prompts)
    cand = ranking(effects + rng.normal(0, 0.1, (30, 10)), prompts)
    common = [f"cross_attn#{i}" for i in range(30)]
    assert drift_rows(base, cand, common, Thresholds(), paired=True, limit=0.0) == []
    draws_b, draws_c = paired_draws(base, cand)
    intervals = [np.quantile(draws_c[s] - draws_b[s], [0.025, 0.975]) for s in common]
    assert sum(low > 0 or high < 0 for low, high in intervals) >= 2  # the old rule: "its 95% interval excludes 0"
