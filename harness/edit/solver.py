"""One ridge solver for the whole closed-form editing family (METHODS.md §11).

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
  (W_newᵀ = B⁻¹ Aᵀ via `torch.linalg.solve`);
* the solve's own wall-clock time is measured and returned, with residuals that say how well the edit
  fits and how far preserved keys moved.
"""

from __future__ import annotations

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
    if not lam > 0:
        raise UserError(f"lambda: expected a value > 0, got {lam}")
    d_out, d_in = weight.shape
    if keys.ndim != 2 or keys.shape[1] != d_in or values.shape != (keys.shape[0], d_out):
        raise ValueError(f"keys {tuple(keys.shape)} / values {tuple(values.shape)} do not fit a "
                         f"{d_out}×{d_in} weight")
    start = time.perf_counter()
    w = weight.detach().to(torch.float64)
    k = keys.detach().to(w.device, torch.float64)
    v = values.detach().to(w.device, torch.float64)
    c0 = torch.eye(d_in, dtype=torch.float64, device=w.device) if prior is None else prior.to(w.device, torch.float64)
    a = lam * (w @ c0) + edit_scale * (v.T @ k)  # (d_out, d_in)
    b = lam * c0 + edit_scale * (k.T @ k)  # (d_in, d_in), symmetric positive definite
    p = None
    if preserve is not None and preserve.shape[0]:
        p = preserve.detach().to(w.device, torch.float64)
        a = a + preserve_scale * ((w @ p.T) @ p)
        b = b + preserve_scale * (p.T @ p)
    new = torch.linalg.solve(b, a.T).T
    seconds = time.perf_counter() - start
    drift = None
    if p is not None:
        drift = _rel(p @ (new - w).T, p @ w.T)
    return Solution(weight=new.to(weight.dtype), seconds=seconds,
                    edit_residual=_rel(k @ new.T - v, v), edit_residual_before=_rel(k @ w.T - v, v),
                    preserve_drift=drift, relative_change=float((new - w).norm() / w.norm().clamp_min(1e-30)),
                    n_keys=int(k.shape[0]))


def key_covariance(keys: torch.Tensor) -> torch.Tensor:
    """C0 = E[k kᵀ], the uncentred second moment of keys (MEMIT's `mom2`), from a sample of keys (n, d_in)."""
    k = keys.detach().to(torch.float64)
    return (k.T @ k) / max(1, k.shape[0])
