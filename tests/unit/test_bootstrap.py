"""The cluster bootstrap resamples prompts (seeds nested), shares one resample across variants, and so
gives honest intervals and rank stability."""

import numpy as np
import pytest

from analysis.bootstrap import cluster_bootstrap, difference_interval, rank_stability, resample_counts


def dominated(n_prompts=10, n_seeds=5):
    """One prompt carries the whole effect (10 on every seed); the others none; tiny seed noise."""
    rng = np.random.default_rng(0)
    prompts = np.repeat(np.arange(n_prompts), n_seeds)
    values = np.where(prompts == 0, 10.0, 0.0) + 0.01 * rng.standard_normal(prompts.size)
    return values[None, None, :], prompts


def test_a_prompt_that_dominates_widens_the_cluster_interval_over_the_rowwise_one():
    values, prompts = dominated()
    clustered = cluster_bootstrap(values, prompts, n_boot=4000)
    rowwise = cluster_bootstrap(values, np.arange(prompts.size), n_boot=4000)
    assert clustered.effect[0] == rowwise.effect[0] == pytest.approx(1.0, abs=0.01)
    width_c = clustered.ci_high[0] - clustered.ci_low[0]
    width_r = rowwise.ci_high[0] - rowwise.ci_low[0]
    # 1 of 10 prompts: the share drawn varies like Binomial(10, 0.1)/10, not Binomial(50, 0.1)/50
    assert width_c > 1.8 * width_r
    assert clustered.ci_low[0] == pytest.approx(0.0, abs=0.02)  # resamples without the prompt happen (35%)
    assert rowwise.ci_low[0] > 0.1


def test_a_resample_is_a_multinomial_draw_of_whole_prompts():
    counts = resample_counts(7, 500, seed=3)
    assert counts.shape == (500, 7) and (counts.sum(axis=1) == 7).all()
    assert (counts == resample_counts(7, 500, seed=3)).all()


def test_paired_effects_subtract_the_matched_reference_row():
    rng = np.random.default_rng(1)
    prompts = np.repeat(np.arange(8), 3)
    reference = rng.normal(0, 5, size=prompts.size)[None]  # prompts differ a lot...
    values = np.stack([reference + 2.0, reference - 1.0])  # ...but the effects are exact
    result = cluster_bootstrap(values, prompts, reference=reference, n_boot=300)
    assert result.effect == pytest.approx([2.0, -1.0])
    assert result.ci_low == pytest.approx([2.0, -1.0]) and result.ci_high == pytest.approx([2.0, -1.0])


def test_p_top_uses_the_shared_resamples_and_sums_to_one():
    prompts = np.repeat(np.arange(6), 2)
    base = np.random.default_rng(2).normal(0, 1, size=prompts.size)
    values = np.stack([base + 1.0, base + 0.0, base + 1.0])[:, None, :]  # 0 and 2 tie exactly
    result = cluster_bootstrap(values, prompts, n_boot=200)
    p_top = rank_stability(result.draws, sign=+1)
    assert p_top.sum() == pytest.approx(1.0)
    assert p_top == pytest.approx([0.5, 0.0, 0.5])
    assert difference_interval(result.draws, 0, 1, +1) == pytest.approx((1.0, 1.0))  # separated
    low, high = difference_interval(result.draws, 0, 2, +1)
    assert low <= 0 <= high  # not separated
    assert rank_stability(result.draws, sign=-1)[1] == 1.0


def test_f1_of_means_is_computed_per_resample_from_mean_precision_and_recall():
    prompts = np.array([0, 1])
    values = np.array([[[1.0, 0.0], [0.0, 1.0]]])  # P = (1, 0), R = (0, 1): per-row F1 is 0
    result = cluster_bootstrap(values, prompts, "f1_of_means", n_boot=400)
    assert result.value[0] == pytest.approx(0.5)
    assert result.ci_low[0] == 0.0 and result.ci_high[0] == pytest.approx(0.5)
