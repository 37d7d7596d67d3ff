"""Agreement across localizers: do LocoGen, attention patching and causal tracing point at the same layers?

When runs of different methods cover the same model and attribute, their rankings are compared over
the sites both ranked: Kendall τ and Spearman ρ of the effect strengths (sign-adjusted so that larger
= stronger under each method's own rule), and the overlap of their top-k sites. A variant is keyed by
its site (a window by its joined sites); causal tracing's text-encoder states at several token
positions keep their strongest position.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

from analysis.effects import GroupRanking


@dataclass(frozen=True)
class Agreement:
    attribute: str
    run_a: str
    method_a: str
    run_b: str
    method_b: str
    n_common: int
    kendall_tau: float | None
    spearman: float | None
    top_k: int
    top_k_overlap: float | None  # |top-k(A) ∩ top-k(B)| / k over the common sites


def site_strengths(group: GroupRanking) -> dict[str, float]:
    out: dict[str, float] = {}
    for v in group.variants:
        key = v.site or v.variant
        strength = group.rule.sign * v.effect
        out[key] = max(out.get(key, -np.inf), strength)
    return out


def agree(a: GroupRanking, b: GroupRanking, k: int = 3) -> Agreement:
    sa, sb = site_strengths(a), site_strengths(b)
    common = sorted(set(sa) & set(sb))
    tau = rho = overlap = None
    if len(common) >= 2:
        x, y = [sa[s] for s in common], [sb[s] for s in common]
        tau, rho = float(np.nan_to_num(stats.kendalltau(x, y).statistic)), float(np.nan_to_num(stats.spearmanr(x, y).statistic))
        kk = min(k, len(common))
        top_a = set(sorted(common, key=lambda s: -sa[s])[:kk])
        top_b = set(sorted(common, key=lambda s: -sb[s])[:kk])
        overlap = len(top_a & top_b) / kk
    return Agreement(a.attribute, a.run, a.method, b.run, b.method, len(common), tau, rho, k, overlap)


def agreement_table(groups: list[GroupRanking], k: int = 3) -> list[Agreement]:
    """Every pair of runs of different methods, per attribute (the attribute-level groups only)."""
    pooled = [g for g in groups if not g.concept]
    out = []
    for a, b in combinations(pooled, 2):
        if a.attribute == b.attribute and a.run != b.run and a.method != b.method:
            out.append(agree(a, b, k))
    return out
