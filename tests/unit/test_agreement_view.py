"""The `agreement` view's arithmetic: Kendall's τ-b (scipy's, over the two runs' strengths of the same sites),
and the top-k sets of the sites with an effect."""

import duckdb
import numpy as np
import pytest
from scipy import stats

from analysis.agreement import create_views, kendall_tau


def sites(a, b, effect_a=None, effect_b=None, top_k=6, concept=""):
    n = len(a)
    effect_a = [x > 0 for x in a] if effect_a is None else effect_a
    effect_b = [x > 0 for x in b] if effect_b is None else effect_b
    return [{"run_a": "A", "method_a": "attn_contrib", "run_b": "B", "method_b": "locogen", "attribute": "style",
             "concept": concept, "site": f"s{i:02d}", "label": f"cross_attn#{i}", "site_index": i,
             "strength_a": float(a[i]), "strength_b": float(b[i]), "effect_a": bool(effect_a[i]),
             "effect_b": bool(effect_b[i]), "n_prompts": 4, "top_k": top_k} for i in range(n)]


def view(records) -> list[dict]:
    con = duckdb.connect()
    create_views(con, records)
    cursor = con.execute("SELECT * FROM agreement")
    return [dict(zip([d[0] for d in cursor.description], row)) for row in cursor.fetchall()]


@pytest.mark.parametrize("seed", range(5))
def test_kendall_tau_is_scipys_tau_b_with_ties(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(1, 5, 12).astype(float), rng.integers(1, 5, 12).astype(float)  # many ties in both
    records = sites(a, b)
    rng.shuffle(records)  # the view pairs each site's two strengths whatever the order of the rows
    (row,) = view(records)
    assert row["kendall_tau"] == pytest.approx(stats.kendalltau(a, b).statistic, abs=1e-12)
    assert row["n_sites"] == 12 and row["concept"] is None


def test_sites_without_an_effect_are_ties_at_zero_whatever_their_noise():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1e-4, 16)
    b = rng.normal(0, 1e-4, 16)
    a[8], b[8] = 2.5, 0.4  # one layer with an effect in both; the rest is noise around 0
    effect = [i == 8 for i in range(16)]
    (row,) = view(sites(a, b, effect_a=effect, effect_b=effect))
    assert row["kendall_tau"] == pytest.approx(1.0, abs=1e-12)
    held = [x if e else 0.0 for x, e in zip(a, effect)], [x if e else 0.0 for x, e in zip(b, effect)]
    assert stats.kendalltau(*held).statistic == pytest.approx(1.0)  # as scipy reads the held strengths


def test_one_planted_layer_seen_by_both_is_full_agreement():
    a = [0.0] * 16
    a[8] = 2.5
    b = [0.0] * 16
    b[8] = 40.0
    (row,) = view(sites(a, b))
    assert row["kendall_tau"] == pytest.approx(1.0, abs=1e-12)  # the 15 tied zeros count for neither order
    assert (row["top_a"], row["top_b"], row["k"], row["top_k_overlap"], row["top_k_share"]) == \
        (["cross_attn#8"], ["cross_attn#8"], 1, 1, 1.0)


def test_two_rankings_built_to_agree_exactly_agree_fully_and_reversed_ones_not_at_all():
    a = [9, 8, 7, 6, 5, 4, 3, 2.0]
    (same,) = view(sites(a, [x * 10 for x in a], top_k=3))  # the same order on another scale
    assert same["kendall_tau"] == pytest.approx(1.0, abs=1e-12)
    assert same["top_a"] == same["top_b"] == ["cross_attn#0", "cross_attn#1", "cross_attn#2"]
    assert (same["k"], same["top_k_overlap"], same["top_k_share"]) == (3, 3, 1.0)
    (reversed_,) = view(sites(a, a[::-1], top_k=3))
    assert reversed_["kendall_tau"] == pytest.approx(-1.0, abs=1e-12)
    assert (reversed_["top_k_overlap"], reversed_["top_k_share"]) == (0, 0.0)


def test_kendall_tau_is_empty_where_a_ranking_orders_nothing():
    assert kendall_tau([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None and kendall_tau([1.0], [2.0]) is None
    assert kendall_tau([1.0, 2.0, 3.0], [1.0, 3.0, 2.0]) == pytest.approx(1 / 3)  # 2 concordant, 1 discordant of 3


def test_top_sets_hold_at_most_k_sites_with_an_effect_strongest_first():
    a = [9, 8, 7, 6, 5, 4, 3, 2.0]
    b = [1, 2, 3, 4, 5, 6, 7, 8.0]
    (row,) = view(sites(a, b, top_k=3))
    assert row["kendall_tau"] == pytest.approx(-1.0)
    assert row["top_a"] == ["cross_attn#0", "cross_attn#1", "cross_attn#2"]
    assert row["top_b"] == ["cross_attn#7", "cross_attn#6", "cross_attn#5"]
    assert (row["k"], row["top_k_overlap"], row["top_k_share"]) == (3, 0, 0.0)
    # a site without an effect (not distinguishable from 0) is never in a top set, however strong it reads
    (row,) = view(sites(a, b, effect_a=[False] + [True] * 7, top_k=3))
    assert row["top_a"] == ["cross_attn#1", "cross_attn#2", "cross_attn#3"]


def test_no_effect_in_either_run_leaves_the_share_empty_and_an_unordered_run_leaves_tau_empty():
    (row,) = view(sites([0.0, 0.0, 0.0], [3.0, 2.0, 1.0], effect_b=[False] * 3))
    assert row["kendall_tau"] is None and row["k"] == 0 and row["top_k_share"] is None


def test_pairs_and_concepts_are_separate_rows():
    rows = view(sites([1.0, 2.0], [1.0, 2.0]) + sites([1.0, 2.0], [2.0, 1.0], concept="van gogh"))
    assert [(r["concept"], round(r["kendall_tau"], 12)) for r in rows] == [(None, 1.0), ("van gogh", -1.0)]
