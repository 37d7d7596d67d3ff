"""Cluster bootstrap: intervals and rank stability that respect how the rows were made.

A sweep generates every variant for the same prompts and seeds. Rows that share a prompt are not
independent (one hard prompt moves every seed of it, and every variant of it), so resampling the
prompt × seed rows one by one, as `loco rank` once did, gives intervals that are too narrow whenever
prompts differ more than seeds do. Here the unit of resampling is the prompt (the *cluster*): a
resample draws n prompts with replacement and keeps each drawn prompt's seeds together (seeds are
nested in their prompt). The same draw is used for every variant and for the reference rows, so
paired effects (variant − control, restored − corrupted), differences between variants and "which
variant is on top" are all computed on one consistent resample.

Implementation: a resample is a vector of prompt counts (multinomial), so a statistic over a resample
is a weighted mean of the rows with their prompt's count as weight; all resamples and all variants are
one matrix product. Missing values (NaN) carry no weight.

    counts = resample_counts(n_clusters=len(prompts), n_boot=N_BOOT, seed=BOOT_SEED)
    draws = aggregate("mean", values, counts[:, clusters])        # (n_boot, n_variants)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.intervals import BOOT_SEED, LEVEL, N_BOOT

AGGREGATES = ("mean", "f1_of_means")


def resample_counts(n_clusters: int, n_boot: int, seed: int = BOOT_SEED) -> np.ndarray:
    """(n_boot, n_clusters) draw counts: each row is one bootstrap resample of the clusters."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_boot).astype(np.float64)


def weighted_mean(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean of `x` (..., R) over rows under each weight vector of `w` (B, R) → (B, ...); NaN rows skipped."""
    mask = ~np.isnan(x)
    filled = np.where(mask, x, 0.0)
    num = np.einsum("br,...r->b...", w, filled)
    den = np.einsum("br,...r->b...", w, mask.astype(np.float64))
    return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)


def aggregate(kind: str, columns: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The statistic of `columns` (K, ..., R) under weights `w` (B, R) → (B, ...).

    ``mean``: the mean of column 0. ``f1_of_means``: P3's OCR F1, 2·P̄·R̄/(P̄+R̄) of the weighted mean
    precision (column 0) and recall (column 1), not the mean of per-row F1."""
    if kind == "mean":
        return weighted_mean(columns[0], w)
    if kind == "f1_of_means":
        p, r = weighted_mean(columns[0], w), weighted_mean(columns[1], w)
        return np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    raise ValueError(f"aggregate: expected one of {', '.join(AGGREGATES)}, got '{kind}'")


@dataclass(frozen=True)
class Bootstrap:
    """Per-variant statistic, paired effect and intervals; `draws` keeps every resample's effects so
    that rank stability and differences between variants use the same resamples."""

    value: np.ndarray  # (V,) the statistic on the observed rows
    reference: float  # the reference rows' statistic (control or corrupted); nan without one
    effect: np.ndarray  # (V,) value − reference (value itself without a reference)
    ci_low: np.ndarray  # (V,) percentile interval of the effect
    ci_high: np.ndarray
    draws: np.ndarray  # (B, V) effect in each resample
    n_clusters: int


def cluster_bootstrap(values: np.ndarray, clusters: np.ndarray, kind: str = "mean",
                      reference: np.ndarray | None = None, n_boot: int = N_BOOT, level: float = LEVEL,
                      seed: int = BOOT_SEED) -> Bootstrap:
    """Bootstrap `values` (V, K, R): V variants, K statistic columns, R rows, whose rows belong to
    `clusters` (R,) (a prompt id per row; pass ``np.arange(R)`` for the row-wise i.i.d. bootstrap).
    `reference` (K, R) holds the reference row matched to each row (same prompt and seed)."""
    values = np.asarray(values, dtype=np.float64)
    _, clusters = np.unique(np.asarray(clusters), return_inverse=True)
    n_clusters = int(clusters.max()) + 1 if clusters.size else 0
    ones = np.ones((1, values.shape[-1]))
    value = aggregate(kind, values.transpose(1, 0, 2), ones)[0]
    ref_value = float(aggregate(kind, reference[:, None, :], ones)[0, 0]) if reference is not None else np.nan
    counts = resample_counts(n_clusters, n_boot, seed)
    w = counts[:, clusters]
    draws = aggregate(kind, values.transpose(1, 0, 2), w)
    if reference is not None:
        draws = draws - aggregate(kind, reference[:, None, :], w)
    effect = value - ref_value if reference is not None else value
    alpha = (1 - level) / 2
    low, high = np.nanquantile(draws, alpha, axis=0), np.nanquantile(draws, 1 - alpha, axis=0)
    return Bootstrap(value, ref_value, effect, low, high, draws, n_clusters)


def rank_stability(draws: np.ndarray, sign: int) -> np.ndarray:
    """P(top): the share of resamples in which each variant has the strongest effect (`sign` +1: the
    largest, −1: the smallest). Ties split their resample evenly."""
    strength = sign * np.nan_to_num(draws, nan=-np.inf if sign > 0 else np.inf)
    best = strength.max(axis=1, keepdims=True)
    top = (strength == best).astype(np.float64)
    return (top / top.sum(axis=1, keepdims=True)).mean(axis=0)


def difference_interval(draws: np.ndarray, first: int, second: int, sign: int,
                        level: float = LEVEL) -> tuple[float, float]:
    """Interval of sign·(effect[first] − effect[second]) over the shared resamples: when it excludes
    0 the first variant is separated from the second."""
    diff = sign * (draws[:, first] - draws[:, second])
    alpha = (1 - level) / 2
    return float(np.nanquantile(diff, alpha)), float(np.nanquantile(diff, 1 - alpha))


def side_pvalues(draws: np.ndarray, effect: np.ndarray, sign: int, n_clusters: int) -> np.ndarray:
    """Per variant, the one-sided p-value of "no effect in the rule's direction" (sign·effect ≤ 0).

    The statistic is sign·effect over its bootstrap standard error, read against Student's t with
    n − 1 degrees of freedom (n = prompts). The standard error comes from the resamples, scaled by
    √(n / (n − 1)): for a mean this is exactly the paired t-test's s/√n, and it also serves P3's F1 of
    means. Why not the share of resamples on the wrong side of 0: with 6–12 prompts the percentile
    bootstrap's tails are too thin (its spread is s·√((n−1)/n)/√n and normal-tailed), and the best of 16
    noise-only layers came out "significant" in ~30 % of null runs even after Holm; with t it is ≤ 5 %.
    An effect with no spread at all (every prompt moved alike, e.g. a planted layer) has p = 0 when it
    points the rule's way and 1 otherwise (an exact 0 is never an effect)."""
    from scipy import stats

    strength = sign * np.asarray(effect, dtype=np.float64)
    if n_clusters < 2:
        return np.ones_like(strength)
    se = np.nanstd(draws, axis=0, ddof=1) * np.sqrt(n_clusters / (n_clusters - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = strength / se
    p = stats.t.sf(t, df=n_clusters - 1)
    exact = ~(se > 1e-12 * np.maximum(1.0, np.abs(strength)))  # no spread (or NaN): the sign decides
    return np.where(exact, np.where(strength > 0, 0.0, 1.0), p)


def two_sided_pvalues(draws: np.ndarray, diff: np.ndarray, n_clusters: int) -> np.ndarray:
    """Per column, the two-sided p-value that `diff` (observed, with its resamples `draws`) is 0."""
    return np.minimum(1.0, 2 * np.minimum(side_pvalues(draws, diff, +1, n_clusters),
                                          side_pvalues(draws, diff, -1, n_clusters)))


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment (family-wise error ≤ α over all the tests): the i-th smallest p-value
    is multiplied by (m − i), the running maximum taken so the adjusted values keep their order.
    statsmodels' ``multipletests(method="holm")`` computes the same; it is not a dependency here."""
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = p.size
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty_like(p)
    out[order] = adjusted
    return out


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (false discovery rate ≤ α): scipy's implementation."""
    from scipy.stats import false_discovery_control

    p = np.asarray(pvalues, dtype=np.float64)
    return false_discovery_control(p) if p.size else p


CORRECTIONS = {"holm": holm, "fdr_bh": benjamini_hochberg}

