"""UCE (Gandikota et al., WACV 2024; docs/methods.md §11.2) as a baseline through the same solver.

    W = (λ W_old + s_e Σ_E v* cᵀ + s_p Σ_P W_old c_j c_jᵀ)(λ I + s_e Σ_E c cᵀ + s_p Σ_P c_j c_jᵀ)⁻¹

c: the concept's last-subject-token prompt embedding (the current UCE code; `templates` adds its
`--expand_prompts` variants); v* = W_old c_guide with the target as guide ('' erases toward the empty
prompt, UCE's moderation); P: the `preserve` concepts, kept at W_old c_j. Every cross-attention to_k and
to_v by default, one λ for both (UCE's defaults λ = 0.5, erase/preserve scale 1).
"""

from __future__ import annotations

from harness.edit.crossattn import run_kv
from harness.edit.weights import EditResult


def run(spec, adapter) -> EditResult:
    return run_kv(spec, adapter, {"to_k": spec.lambda_k, "to_v": spec.lambda_k}, edit_scale=spec.edit_scale)
