"""One ridge solver for the whole closed-form editing family (docs/methods.md §11).

Every closed-form editor in the three papers and their baselines solves, per edited linear map
W (d_out × d_in, y = W k):

    min_W  s_e Σ_i ‖W k_i − v_i‖²  +  s_p Σ_j ‖W p_j − W_old p_j‖²  +  λ ‖(W − W_old) C0^½‖²_F

whose minimiser is

    W = (λ W_old C0 + s_e Vᵀ K + s_p W_old Pᵀ P) (λ C0 + s_e Kᵀ K + s_p Pᵀ P)⁻¹

with keys K (n × d_in) and values V (n × d_out) stacked as rows — so many concepts are edited at once by
stacking their rows (the objective is a sum) — and an optional preserve set P (m × d_in, UCE). C0 = I
gives TIME / UCE / DiffQuickFix / LocoEdit; C0 = a key second-moment matrix gives MEMIT's prior
(W = W_old + R Kᵀ (λ C0 + KᵀK)⁻¹ with R = V − W_old K, the same formula rearranged).

How it is computed, and why:
* float64 throughout (MEMIT solves in fp64; the references' fp32 inverses lose digits when λ is small and
  keys are nearly parallel, as CLIP embeddings of different words are), cast back to the weight's dtype
  at the end;
* a linear solve of the symmetric positive-definite B = λ C0 + …, never an explicit inverse
  (W_newᵀ = B⁻¹ Aᵀ by a Cholesky factorization and two triangular solves), factored once for all the
  matrices that share keys and λ (`ridge_edit_shared`);
* the solve's own wall-clock time is measured and returned, with residuals that say how well the edit
  fits and how far preserved keys moved;
* a covariance prior C0 must be full rank (`covariance_prior`). A singular C0 leaves the directions it
  does not span unpenalized: W may move along them freely and the "solution" is whatever the
  factorization makes of a singular system (3 prior prompts on a 64-d key space: rank 19, weights moved
  48–95× their norm; issue 16). Such a prior is refused, naming how many keys it needs, unless the edit
  asks for a ridge (C0 + ε·mean(eig C0)·I), which the edit's manifest then records.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from harness.errors import UserError


@dataclass(frozen=True)
class Solution:
    """The edited weight and what the manifest records about the solve."""

    weight: torch.Tensor  # W_new, in the dtype and device of W_old
    seconds: float  # wall-clock of the solve itself (keys and values are extracted before)
    edit_residual: float  # mean over keys of ‖W_new k − v‖ / ‖v‖ (0 = exact fit)
    edit_residual_before: float  # the same with W_old: how far the edit had to move
    preserve_drift: float | None  # mean over preserved keys of ‖(W_new − W_old) p‖ / ‖W_old p‖
    relative_change: float  # ‖W_new − W_old‖_F / ‖W_old‖_F
    n_keys: int

    def record(self) -> dict:
        return {"seconds": self.seconds, "edit_residual": self.edit_residual,
                "edit_residual_before": self.edit_residual_before, "preserve_drift": self.preserve_drift,
                "relative_change": self.relative_change, "n_keys": self.n_keys}


def _rel(diff: torch.Tensor, ref: torch.Tensor) -> float:
    if diff.shape[0] == 0:
        return 0.0
    return float((diff.norm(dim=1) / ref.norm(dim=1).clamp_min(1e-30)).mean())


def ridge_edit(weight: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, lam: float,
               preserve: torch.Tensor | None = None, edit_scale: float = 1.0, preserve_scale: float = 1.0,
               prior: torch.Tensor | None = None) -> Solution:
    """Solve the edit of one matrix.

    weight: W_old, (d_out, d_in), the layout of `torch.nn.Linear.weight`.
    keys: (n, d_in) inputs whose outputs are to become `values` (n, d_out); n may be 0 (no edit).
    lam: λ > 0, the pull toward W_old (→ ∞: no change; → 0: exact fit where the keys allow it).
    preserve: (m, d_in) keys whose outputs should stay W_old p (UCE's preserve set), weighted by
    `preserve_scale`; `edit_scale` weights the edit rows (UCE's erase_scale).
    prior: C0 (d_in, d_in), symmetric positive definite; None = identity (MEMIT passes key covariance).
    """
    return ridge_edit_shared([weight], keys, [values], lam, preserve, edit_scale, preserve_scale, prior)[0]


def ridge_edit_shared(weights: list[torch.Tensor], keys: torch.Tensor, values: list[torch.Tensor], lam: float,
                      preserve: torch.Tensor | None = None, edit_scale: float = 1.0, preserve_scale: float = 1.0,
                      prior: torch.Tensor | None = None) -> list[Solution]:
    """`ridge_edit` for several matrices that share their keys, λ, preserve set and prior (UCE's 140
    SDXL projections, LocoEdit's K and V when λ_K = λ_V): B = λ C0 + s_e KᵀK + s_p PᵀP is the same for all,
    so it is factored once (Cholesky: B is symmetric positive definite) and each matrix costs two
    triangular solves. The factorization's time is shared out equally among the matrices' `seconds`."""
    if not lam > 0:
        raise UserError(f"lambda: expected a value > 0, got {lam}")
    d_in = keys.shape[1] if keys.ndim == 2 else -1
    for weight, value in zip(weights, values):
        d_out = weight.shape[0]
        if keys.ndim != 2 or weight.shape[1] != d_in or value.shape != (keys.shape[0], d_out):
            raise ValueError(f"keys {tuple(keys.shape)} / values {tuple(value.shape)} do not fit a "
                             f"{tuple(weight.shape)} weight")
    start = time.perf_counter()
    device = weights[0].device
    k = keys.detach().to(device, torch.float64)
    eye = torch.eye(d_in, dtype=torch.float64, device=device)
    c0 = None if prior is None else prior.to(device, torch.float64)
    rank = d_in if c0 is None else prior_rank(c0)
    if rank < d_in:  # never a silent solve of a singular system
        raise UserError(f"prior: the covariance has rank {rank} of {d_in}; a prior must be full rank "
                        "(more prior prompts, or a ridge)")
    b = lam * (eye if c0 is None else c0) + edit_scale * (k.T @ k)  # (d_in, d_in)
    p = None
    if preserve is not None and preserve.shape[0]:
        p = preserve.detach().to(device, torch.float64)
        b = b + preserve_scale * (p.T @ p)
    factor, info = torch.linalg.cholesky_ex(b)
    if info.item() != 0:  # positive definite in exact arithmetic, not numerically (λ ≪ preserve weights): LU
        lu = torch.linalg.lu_factor(b)
    shared = (time.perf_counter() - start) / max(1, len(weights))
    out = []
    for weight, value in zip(weights, values):
        t0 = time.perf_counter()
        w = weight.detach().to(torch.float64)
        v = value.detach().to(device, torch.float64)
        a = lam * (w if c0 is None else w @ c0) + edit_scale * (v.T @ k)  # (d_out, d_in)
        if p is not None:
            a = a + preserve_scale * ((w @ p.T) @ p)
        # W_new = A B⁻¹ as (B⁻¹ Aᵀ)ᵀ (B symmetric), never forming B⁻¹
        new = (torch.cholesky_solve(a.T, factor) if info.item() == 0 else torch.linalg.lu_solve(*lu, a.T)).T
        seconds = shared + time.perf_counter() - t0
        drift = None if p is None else _rel(p @ (new - w).T, p @ w.T)
        out.append(Solution(weight=new.to(weight.dtype), seconds=seconds,
                            edit_residual=_rel(k @ new.T - v, v), edit_residual_before=_rel(k @ w.T - v, v),
                            preserve_drift=drift, relative_change=float((new - w).norm() / w.norm().clamp_min(1e-30)),
                            n_keys=int(k.shape[0])))
    return out


PRIOR_RTOL = 1e-10  # eigenvalues of C0 below this share of the largest count as zero (C0 is float64)


@dataclass(frozen=True)
class Prior:
    """A checked covariance prior: the matrix the solver uses and what the manifest records about it."""

    matrix: torch.Tensor
    record: dict  # rank, dim, tokens, prompts, ridge (relative) and ridge_absolute


def prior_rank(c0: torch.Tensor) -> int:
    """Numerical rank of the symmetric positive semi-definite `c0` (eigenvalues above PRIOR_RTOL × max)."""
    eig = torch.linalg.eigvalsh(c0.to(torch.float64))
    return int((eig > PRIOR_RTOL * eig.max().clamp_min(0)).sum()) if eig.numel() else 0


def covariance_prior(keys: torch.Tensor, n_prompts: int, ridge: float | None = None) -> Prior:
    """MEMIT's prior C0 = E[k kᵀ] from `keys` (every token of `n_prompts` prompts), refused when it is not
    full rank unless `ridge` ε > 0 asks for C0 + ε·(tr C0 / d)·I (ε relative to C0's mean eigenvalue)."""
    c0 = key_covariance(keys)
    dim, n_tokens = c0.shape[0], int(keys.shape[0])
    rank = prior_rank(c0)
    if rank < dim and ridge is None:
        needed = math.ceil(dim * n_prompts / max(1, n_tokens))  # prompts of this length that give dim tokens
        raise UserError(f"prior_prompts: the key covariance of {n_prompts} prompts ({n_tokens} tokens) has rank "
                        f"{rank} of {dim}, and MEMIT's prior needs it full rank: give at least {dim} linearly "
                        f"independent token keys (about {needed} or more prompts of this length), or set "
                        "prior_ridge (e.g. 0.01) to regularize it")
    absolute = 0.0 if ridge is None else ridge * float(torch.diagonal(c0).mean())
    if absolute:
        c0 = c0 + absolute * torch.eye(dim, dtype=c0.dtype, device=c0.device)
    return Prior(c0, {"rank": rank, "dim": dim, "tokens": n_tokens, "prompts": n_prompts, "ridge": ridge,
                      "ridge_absolute": absolute})


def key_covariance(keys: torch.Tensor) -> torch.Tensor:
    """C0 = E[k kᵀ], the uncentred second moment of keys (MEMIT's `mom2`), from a sample of keys (n, d_in)."""
    k = keys.detach().to(torch.float64)
    return (k.T @ k) / max(1, k.shape[0])
