"""Ranking reads a run's Parquet parts with DuckDB: effect direction, bootstrap CIs, P3's F1-of-means."""

import numpy as np
import pytest

from analysis.rank import RankError, bootstrap_ci, format_ranking, rank
from harness.results.store import RunStore


def write_run(tmp_path, method: str, values: dict[str, list[float]], extra=None) -> str:
    rows = []
    for index, (variant, series) in enumerate(values.items()):
        for k, value in enumerate(series):
            row = {"method": method, "role": "variant", "variant": variant, "site": f"unet.site{index}",
                   "kind": "cross_attn", "site_index": index, "window_start": index, "window_size": 1,
                   "prompt_id": f"p{k}", "seed": 0, "mse": value, "ssim": 1 - value / 100}
            row.update((extra or {}).get(variant, [{}] * len(series))[k])
            rows.append(row)
    rows.append({"method": method, "role": "control", "variant": "control", "prompt_id": "p0", "seed": 0,
                 "mse": 0.0, "ssim": 1.0})
    RunStore(tmp_path).write_unit(method, "u1", rows)
    return str(tmp_path)


def test_deviation_methods_rank_the_largest_effect_first(tmp_path):
    run = write_run(tmp_path, "locogen", {"a": [1, 2], "b": [10, 12], "c": [5, 5]})
    ranking = rank(run, n_boot=100)
    assert [s.variant for s in ranking.sites] == ["b", "c", "a"]
    assert ranking.sites[0].mean == 11 and ranking.sites[0].n == 2
    assert ranking.references == {"control": 0.0}
    # SSIM points the other way: lower SSIM = larger effect, same order
    assert [s.variant for s in rank(run, metric="ssim", n_boot=100).sites] == ["b", "c", "a"]


def test_causal_tracing_ranks_the_best_restoration_first(tmp_path):
    run = write_run(tmp_path, "causal_trace", {"a": [1, 2], "b": [10, 12], "c": [0, 0]})
    assert [s.variant for s in rank(run, n_boot=100).sites] == ["c", "a", "b"]


def test_order_can_be_overridden(tmp_path):
    run = write_run(tmp_path, "locogen", {"a": [1], "b": [2]})
    assert [s.variant for s in rank(run, order="asc", n_boot=10).sites] == ["a", "b"]


def test_bootstrap_interval_contains_the_mean_and_is_reproducible():
    values = np.random.default_rng(1).normal(5, 2, size=40)
    low, high = bootstrap_ci(values, n_boot=500)
    assert low < values.mean() < high
    assert (low, high) == bootstrap_ci(values, n_boot=500)
    assert bootstrap_ci(np.array([3.0])) == (3.0, 3.0)


def test_ocr_f1_is_aggregated_as_f1_of_mean_precision_and_recall(tmp_path):
    pr = {"a": [{"ocr_char_p_target": 1.0, "ocr_char_r_target": 0.0, "ocr_char_f1_target": 0.0},
                {"ocr_char_p_target": 0.0, "ocr_char_r_target": 1.0, "ocr_char_f1_target": 0.0}]}
    run = write_run(tmp_path, "attn_patch", {"a": [1, 1]}, extra=pr)
    (site,) = rank(run, metric="ocr_char_f1_target", n_boot=50).sites
    assert site.mean == pytest.approx(0.5)  # 2·0.5·0.5/(0.5+0.5); the mean of per-row F1 would be 0
    with pytest.raises(RankError, match="ocr_char_f1_target is constant .0. on all 2 variant rows"):
        rank(run, metric="ocr_char_f1_target", aggregate="mean", n_boot=50)  # per-row F1 is 0 on both rows


def test_errors_name_what_was_expected(tmp_path):
    with pytest.raises(RankError, match="has no results"):
        rank(tmp_path)
    run = write_run(tmp_path, "locogen", {"a": [1]})
    with pytest.raises(RankError, match="did you mean 'mse'"):
        rank(run, metric="msee")
    with pytest.raises(RankError, match="f1_of_means needs an OCR F1 metric"):
        rank(run, metric="mse", aggregate="f1_of_means")


def test_the_table_shows_every_site(tmp_path):
    run = write_run(tmp_path, "locogen", {"a": [1, 3], "b": [2, 2]})
    text = format_ranking(rank(run, n_boot=50))
    assert "unet.site0" in text and "references: control 0" in text


def test_f1_of_means_matches_the_metric_function_for_one_row_and_for_resamples():
    from analysis.rank import statistic
    from harness.metrics.text import f1_of_means

    p, r = np.array([1.0, 0.2, 0.0]), np.array([0.0, 0.6, 0.0])
    assert statistic("f1_of_means", np.stack([p, r])) == pytest.approx(f1_of_means(list(p), list(r)))
    assert statistic("f1_of_means", np.zeros((2, 1))) == 0
    resampled = np.stack([np.stack([p, p[::-1]]), np.stack([r, r[::-1]])])
    assert statistic("f1_of_means", resampled) == pytest.approx([f1_of_means(list(p), list(r))] * 2)


def test_without_the_paper_metric_the_first_effect_column_is_ranked(tmp_path):
    rows = [{"method": "attn_patch", "role": "variant", "variant": v, "site": f"unet.{v}", "kind": "cross_attn",
             "site_index": i, "prompt_id": "p0", "seed": 0, "clip_t_prompt": 0.5, "clip_t_target": t}
            for i, (v, t) in enumerate([("a", 0.1), ("b", 0.9)])]
    RunStore(tmp_path).write_unit("attn_patch", "u1", rows)
    ranking = rank(tmp_path, n_boot=10)
    assert ranking.metric == "clip_t_target" and [s.variant for s in ranking.sites] == ["b", "a"]


def test_only_effect_columns_can_be_ranked_and_resamples_must_be_positive(tmp_path):
    run = write_run(tmp_path, "locogen", {"a": [1]})
    with pytest.raises(RankError, match="'seed' is not a metric column of this run"):
        rank(run, metric="seed")
    with pytest.raises(RankError, match="--bootstrap: expected at least 1"):
        rank(run, n_boot=0)


def test_loco_rank_resamples_whole_prompts(tmp_path):
    # prompt p0 carries the effect on all five of its seeds; rows of one prompt move together
    rows = [{"method": "locogen", "role": "variant", "variant": "a", "site": "s", "kind": "cross_attn", "site_index": 0,
             "prompt_id": f"p{p}", "seed": s, "mse": (10.0 if p == 0 else 0.0) + 0.01 * s} for p in range(10) for s in range(5)]
    RunStore(tmp_path).write_unit("locogen", "u1", rows)
    (site,) = rank(str(tmp_path), n_boot=2000).sites
    values = np.array([r["mse"] for r in sorted(rows, key=lambda r: (r["prompt_id"], r["seed"]))])
    rowwise = bootstrap_ci(values, n_boot=2000)
    assert site.ci_high - site.ci_low > 1.5 * (rowwise[1] - rowwise[0])  # ~√5 in SD; quantiles are discrete
