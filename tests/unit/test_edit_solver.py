"""The ridge solver is the closed-form family's one formula: it must equal a least-squares solve and
obey the invariants of docs/methods.md §11.6."""

import pytest
import torch

from harness.edit.solver import covariance_prior, key_covariance, ridge_edit
from harness.errors import UserError


def problem(seed=0, d_out=6, d_in=5, n=3, m=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    k = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    v = torch.randn(n, d_out, generator=g, dtype=torch.float64)
    p = torch.randn(m, d_in, generator=g, dtype=torch.float64)
    return w, k, v, p


@pytest.mark.parametrize("seed", range(5))
def test_equals_lstsq_of_the_stacked_ridge_problem(seed):
    # min ‖K Wᵀ − V‖² + λ‖W − W0‖² + s_p‖P Wᵀ − P W0ᵀ‖² is ordinary least squares on stacked rows.
    w, k, v, p = problem(seed, m=2)
    lam, sp = 0.3, 2.0
    rows = torch.cat([k, lam ** 0.5 * torch.eye(5, dtype=torch.float64), sp ** 0.5 * p])
    rhs = torch.cat([v, lam ** 0.5 * w.T, sp ** 0.5 * (p @ w.T)])
    expected = torch.linalg.lstsq(rows, rhs).solution.T
    got = ridge_edit(w, k, v, lam, preserve=p, preserve_scale=sp).weight
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_prior_equals_lstsq_with_the_prior_metric():
    # MEMIT: λ‖(W − W0) C0^½‖² + ‖K Wᵀ − V‖²; C0^½ via Cholesky (C0 = L Lᵀ → rows √λ Lᵀ).
    w, k, v, _ = problem(1, n=4)
    c0 = key_covariance(torch.randn(50, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64))
    lam = 2.0
    lt = torch.linalg.cholesky(c0).T
    rows = torch.cat([k, lam ** 0.5 * lt])
    rhs = torch.cat([v, lam ** 0.5 * (lt @ w.T)])
    expected = torch.linalg.lstsq(rows, rhs).solution.T
    torch.testing.assert_close(ridge_edit(w, k, v, lam, prior=c0).weight, expected, rtol=1e-9, atol=1e-9)


def test_no_edits_returns_the_old_weights():
    w, _, _, _ = problem()
    out = ridge_edit(w, torch.zeros(0, 5, dtype=w.dtype), torch.zeros(0, 6, dtype=w.dtype), 0.7)
    torch.testing.assert_close(out.weight, w, rtol=0, atol=1e-14)


def test_lambda_to_zero_fits_exactly():
    w, k, v, _ = problem(n=3)  # 3 independent keys in 5 dimensions: an exact fit exists
    out = ridge_edit(w, k, v, 1e-10)
    torch.testing.assert_close(out.weight @ k.T, v.T, rtol=1e-7, atol=1e-7)
    assert out.edit_residual < 1e-7 < out.edit_residual_before


def test_lambda_to_infinity_changes_nothing():
    w, k, v, _ = problem()
    torch.testing.assert_close(ridge_edit(w, k, v, 1e12).weight, w, rtol=0, atol=1e-9)


def test_preserved_keys_stay_with_a_strong_preserve_weight():
    w, k, v, p = problem(2, n=2, m=2)
    out = ridge_edit(w, k, v, 1e-8, preserve=p, preserve_scale=1e8)
    torch.testing.assert_close(out.weight @ p.T, w @ p.T, rtol=1e-6, atol=1e-6)
    assert out.preserve_drift < 1e-6


def test_preserve_only_changes_nothing():
    w, _, _, p = problem(m=3)
    out = ridge_edit(w, torch.zeros(0, 5, dtype=w.dtype), torch.zeros(0, 6, dtype=w.dtype), 0.1, preserve=p)
    torch.testing.assert_close(out.weight, w, rtol=0, atol=1e-12)


def test_keys_orthogonal_to_the_edit_keys_are_untouched():
    w, k, v, _ = problem(3, n=2)
    q, _ = torch.linalg.qr(k.T, mode="complete")  # last columns span the orthogonal complement of the keys
    ortho = q[:, 2:].T
    out = ridge_edit(w, k, v, 0.05)
    torch.testing.assert_close(out.weight @ ortho.T, w @ ortho.T, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(out.weight @ k.T, w @ k.T)


def test_edit_order_does_not_matter():
    w, k, v, p = problem(4, n=4, m=2)
    perm = torch.tensor([2, 0, 3, 1])
    a = ridge_edit(w, k, v, 0.2, preserve=p).weight
    b = ridge_edit(w, k[perm], v[perm], 0.2, preserve=p.flip(0)).weight
    torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


def test_many_concepts_at_once_equal_one_stacked_problem():
    # Editing two concepts together is one solve over their stacked rows, not two edits in sequence.
    w, k, v, _ = problem(5, n=4)
    together = ridge_edit(w, k, v, 0.1).weight
    sequential = ridge_edit(ridge_edit(w, k[:2], v[:2], 0.1).weight, k[2:], v[2:], 0.1).weight
    rows = torch.cat([k, 0.1 ** 0.5 * torch.eye(5, dtype=w.dtype)])
    expected = torch.linalg.lstsq(rows, torch.cat([v, 0.1 ** 0.5 * w.T])).solution.T
    torch.testing.assert_close(together, expected, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(together, sequential)


def test_keeps_the_weight_dtype_and_records_time():
    w, k, v, _ = problem()
    out = ridge_edit(w.float(), k.float(), v.float(), 0.01)
    assert out.weight.dtype == torch.float32 and out.seconds >= 0 and out.n_keys == 3


@pytest.mark.parametrize("lam", [0, -1.0])
def test_lambda_must_be_positive(lam):
    w, k, v, _ = problem()
    with pytest.raises(UserError, match="lambda: expected a value > 0"):
        ridge_edit(w, k, v, lam)


def test_shared_factorization_equals_one_solve_per_matrix():
    from harness.edit.solver import ridge_edit_shared

    w1, k, v1, p = problem(6, m=2)
    w2 = torch.randn(3, 5, dtype=torch.float64)
    v2 = torch.randn(3, 3, dtype=torch.float64)
    shared = ridge_edit_shared([w1, w2], k, [v1, v2], 0.05, preserve=p)
    for w, v, got in ((w1, v1, shared[0]), (w2, v2, shared[1])):
        torch.testing.assert_close(got.weight, ridge_edit(w, k, v, 0.05, preserve=p).weight, rtol=1e-12, atol=1e-12)


# ---- MEMIT's covariance prior must be full rank (issue 16) ---------------------------------------------
def low_rank_keys(n_tokens=19, d_in=64, seed=3):
    """19 token keys in a 64-d key space: 3 prior prompts' worth, rank 19 of 64."""
    return torch.randn(n_tokens, d_in, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_a_rank_deficient_covariance_prior_is_refused_naming_how_many_keys_it_needs():
    with pytest.raises(UserError, match=r"^prior_prompts: the key covariance of 3 prompts \(19 tokens\) has rank 19 "
                                        r"of 64, .* at least 64 linearly independent token keys \(about 11 or more "
                                        r"prompts of this length\), or set prior_ridge"):
        covariance_prior(low_rank_keys(), 3)
    # and the solver itself never solves a singular prior silently, whoever calls it
    w, k, v = torch.randn(8, 64, dtype=torch.float64), low_rank_keys(2, seed=4), torch.randn(2, 8, dtype=torch.float64)
    with pytest.raises(UserError, match="prior: the covariance has rank 19 of 64"):
        ridge_edit(w, k, v, 0.1, prior=key_covariance(low_rank_keys()))


def test_a_ridge_regularizes_the_prior_and_says_so():
    keys = low_rank_keys()
    prior = covariance_prior(keys, 3, ridge=0.01)
    c0 = key_covariance(keys)
    eps = 0.01 * float(torch.diagonal(c0).mean())
    torch.testing.assert_close(prior.matrix, c0 + eps * torch.eye(64, dtype=torch.float64), rtol=0, atol=1e-15)
    assert prior.record == {"rank": 19, "dim": 64, "tokens": 19, "prompts": 3, "ridge": 0.01,
                            "ridge_absolute": pytest.approx(eps)}
    # the regularized edit is the least-squares solve with that metric, and stays near the old weights
    g = torch.Generator().manual_seed(5)
    w = torch.randn(8, 64, generator=g, dtype=torch.float64)
    k, v = torch.randn(2, 64, generator=g, dtype=torch.float64), torch.randn(2, 8, generator=g, dtype=torch.float64)
    lt = torch.linalg.cholesky(prior.matrix).T
    expected = torch.linalg.lstsq(torch.cat([k, lt]), torch.cat([v, lt @ w.T])).solution.T
    solved = ridge_edit(w, k, v, 1.0, prior=prior.matrix)
    torch.testing.assert_close(solved.weight, expected, rtol=1e-8, atol=1e-8)
    assert solved.relative_change < 1.0


def test_a_full_rank_prior_is_used_as_it_is_and_still_matches_least_squares():
    keys = torch.randn(200, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    prior = covariance_prior(keys, 20)
    assert prior.record["rank"] == 5 and prior.record["ridge"] is None
    torch.testing.assert_close(prior.matrix, key_covariance(keys), rtol=0, atol=0)
    w, k, v, _ = problem(2, n=4)
    lt = torch.linalg.cholesky(prior.matrix).T
    expected = torch.linalg.lstsq(torch.cat([k, 0.5 ** 0.5 * lt]), torch.cat([v, 0.5 ** 0.5 * (lt @ w.T)])).solution.T
    torch.testing.assert_close(ridge_edit(w, k, v, 0.5, prior=prior.matrix).weight, expected, rtol=1e-9, atol=1e-9)
